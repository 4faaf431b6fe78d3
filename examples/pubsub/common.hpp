// Shared by the pub/sub example's publisher and subscriber: reading the manifest file and
// applying the few command-line overrides both accept.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include <tmc/manifest.hpp>
#include <tmc/status.hpp>

#ifndef TMC_PUBSUB_MANIFEST
#define TMC_PUBSUB_MANIFEST "quotes.yaml"
#endif

namespace pubsub {

/// Load `path` (every problem printed with file:line) and apply --port / --interface.
inline bool load(const std::string& path, int port, const std::string& interface, tmc::Manifest& out) {
  tmc::Diagnostics diag;
  if (!tmc::load_manifest(path, out, diag)) {
    std::fprintf(stderr, "%s", diag.to_string().c_str());
    return false;
  }
  if (port > 0) out.port = port;
  if (!interface.empty()) out.interface = interface;
  return true;
}

}  // namespace pubsub

// Built out of tree against an installed libTMC (find_package or pkg-config). It includes
// every public header, so a header that needs something beyond the C++ standard library
// (libuv, yaml-cpp, Boost) fails here, and it calls into libtmc.so so the link is checked.
#include <cstdio>
#include <cstring>

#if __has_include(<tmc/channel.hpp>)
#include <tmc/channel.hpp>
#endif
#include <tmc/capabilities.hpp>
#include <tmc/diagnostics.hpp>
#include <tmc/manifest.hpp>
#include <tmc/packet.hpp>
#include <tmc/plan.hpp>
#include <tmc/stage.hpp>
#include <tmc/status.hpp>
#include <tmc/wire.hpp>

int main() {
  const std::string_view name = tmc::status_name(tmc::Code::NOT_AVAILABLE);
  if (name != "NOT_AVAILABLE") {
    std::fprintf(stderr, "consumer: status_name returned '%.*s'\n", static_cast<int>(name.size()), name.data());
    return 1;
  }
  const char id[] = "orders";
  std::printf("consumer: linked libtmc; status_name(NOT_AVAILABLE) = %.*s; channel_hash(\"orders\") = %08x\n",
              static_cast<int>(name.size()), name.data(), tmc::wire::channel_hash(id, std::strlen(id)));
  return 0;
}

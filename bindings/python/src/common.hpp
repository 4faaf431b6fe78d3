// Shared declarations of the Python extension `libTMC._tmc`.
//
// module.cpp only calls the register_* functions below, in dependency order (errors first,
// because every other part raises them). Each part lives in its own file.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include <tmc/manifest.hpp>
#include <tmc/message.hpp>
#include <tmc/status.hpp>

namespace tmc::python {

namespace py = pybind11;

void register_errors(py::module_& m);
void register_manifest(py::module_& m);
void register_message(py::module_& m);
void register_plan(py::module_& m);
void register_channel(py::module_& m);

// --- errors.cpp ----------------------------------------------------------------------------
/// Raise the libTMC exception class for `s` (with .code and .message set). Never returns.
[[noreturn]] void raise_status(const Status& s);
/// raise_status(s) unless s is OK.
inline void check(const Status& s) {
  if (!s.is_ok()) raise_status(s);
}
/// A Status for a manifest problem found on the Python side (a non-str key, an unsupported
/// value type), in the same "<dict>: 'key': ..." shape the C++ parser uses.
[[noreturn]] void raise_manifest_error(const std::string& key, const std::string& message);

// --- manifest.cpp --------------------------------------------------------------------------
/// Convert a Python dict (or any value inside one) to a tmc::Value, locating every node in
/// "<dict>". `path` names the key being converted, for errors ("reliability.ack from").
/// Raises ManifestError for a non-str key or a value of an unsupported type.
Value to_value(py::handle obj, const std::string& path);
/// A dict of manifest keys plus keyword arguments (snake_case aliases), merged; either may
/// be absent. Keyword arguments win over the dict's entries with the same key.
Value manifest_value(py::handle dict_or_none, const py::dict& kwargs);
/// Parse a per-message manifest ({'reliability': True}); raises ManifestError.
MessageManifest message_manifest(py::handle dict);

// --- message.cpp ---------------------------------------------------------------------------
/// The Python-side owner of one delivered tmc::Message (its buffer stays in the channel's
/// pool until this object, and every memoryview of it, is gone).
struct PyMessage {
  Message msg;
};

}  // namespace tmc::python

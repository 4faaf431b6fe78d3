// libTMC's Python exceptions, and the one place a tmc::Status becomes one.
//
//   Error                                  every libTMC failure; .code, .message
//   ├── ManifestError(Error, ValueError)   INVALID_MANIFEST, INVALID_CAPABILITIES, UNKNOWN_STAGE
//   │   └── NotAvailableError              NOT_AVAILABLE: a property whose stage is not built yet
//   └── ChannelError                       network and channel state: BAD_ADDRESS,
//       │                                  NO_SUCH_INTERFACE, ADDRESS_IN_USE, PERMISSION_DENIED,
//       │                                  IO_ERROR, CLOSED, NOT_PERMITTED_BY_DUPLEXITY, WOULD_BLOCK,
//       │                                  DELIVERY_FAILED
//       ├── MessageTooLargeError(ChannelError, ValueError)   MESSAGE_TOO_LARGE
//       └── ChannelTimeoutError(ChannelError, TimeoutError)  TIMED_OUT
//
// The classes are made with PyErr_NewExceptionWithDoc rather than py::exception<> because
// two of them have two bases (so `except ValueError` catches a bad manifest, as the issue
// asks), which py::exception<> cannot express.
#include <pybind11/pybind11.h>

#include "common.hpp"

namespace tmc::python {

namespace {

struct ExceptionClasses {
  PyObject* error = nullptr;
  PyObject* manifest = nullptr;
  PyObject* not_available = nullptr;
  PyObject* channel = nullptr;
  PyObject* too_large = nullptr;
  PyObject* timeout = nullptr;
};
// Created once at import and kept for the life of the process (the module holds a
// reference too); never freed, so no destructor runs after the interpreter is gone.
ExceptionClasses g_classes;

PyObject* class_for(Code code) {
  switch (code) {
    case Code::INVALID_MANIFEST:
    case Code::INVALID_CAPABILITIES:
    case Code::UNKNOWN_STAGE:
      return g_classes.manifest;
    case Code::NOT_AVAILABLE:
      return g_classes.not_available;
    case Code::MESSAGE_TOO_LARGE:
      return g_classes.too_large;
    case Code::TIMED_OUT:
      return g_classes.timeout;
    case Code::BAD_ADDRESS:
    case Code::NO_SUCH_INTERFACE:
    case Code::ADDRESS_IN_USE:
    case Code::PERMISSION_DENIED:
    case Code::IO_ERROR:
    case Code::CLOSED:
    case Code::NOT_PERMITTED_BY_DUPLEXITY:
    case Code::WOULD_BLOCK:
    case Code::MALFORMED_PACKET:
    case Code::DELIVERY_FAILED:
      return g_classes.channel;
    case Code::OK:
    case Code::INVALID_ARGUMENT:
    case Code::MODULE_ERROR:
    case Code::INTERNAL:
      break;
  }
  return g_classes.error;
}

/// Set the Python error for `s` (the interpreter's error indicator), without throwing.
void set_status_error(const Status& s) {
  PyObject* cls = class_for(s.code());
  py::object exc = py::reinterpret_borrow<py::object>(cls)(s.to_string());
  exc.attr("code") = py::str(std::string(status_name(s.code())));
  exc.attr("message") = py::str(s.message());
  PyErr_SetObject(cls, exc.ptr());
}

PyObject* make_class(py::module_& m, const char* name, const char* doc, std::initializer_list<PyObject*> bases) {
  py::tuple base_tuple(bases.size());
  std::size_t i = 0;
  for (PyObject* b : bases) base_tuple[i++] = py::reinterpret_borrow<py::object>(b);
  const std::string qualified = std::string("libTMC.") + name;
  PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base_tuple.ptr(), nullptr);
  if (cls == nullptr) throw py::error_already_set();
  m.attr(name) = py::reinterpret_borrow<py::object>(cls);
  return cls;
}

}  // namespace

void raise_status(const Status& s) {
  set_status_error(s);
  throw py::error_already_set();
}

void raise_manifest_error(const std::string& key, const std::string& message) {
  raise_status(Status(Code::INVALID_MANIFEST, "<dict>: '" + key + "': " + message));
}

void register_errors(py::module_& m) {
  g_classes.error = make_class(m, "Error",
                               "Base class of every libTMC error. .code is the status name (e.g. "
                               "'INVALID_MANIFEST'); .message the text naming what went wrong and where.",
                               {PyExc_Exception});
  g_classes.manifest = make_class(m, "ManifestError",
                                  "A manifest (or capability file) is wrong: an unknown key, a wrong type, an "
                                  "impossible combination. The message names the key.",
                                  {g_classes.error, PyExc_ValueError});
  g_classes.not_available = make_class(m, "NotAvailableError",
                                       "The manifest asks for a property whose stage is not built yet "
                                       "(code NOT_AVAILABLE); the message names the property.",
                                       {g_classes.manifest});
  g_classes.channel = make_class(m, "ChannelError",
                                 "The network or the channel's state refused an operation: bad address, no such "
                                 "interface, address in use, permission denied, I/O error, channel closed, "
                                 "not permitted by the channel's duplexity.",
                                 {g_classes.error});
  g_classes.too_large = make_class(m, "MessageTooLargeError",
                                   "The message is larger than the channel's plan allows; the message names both sizes.",
                                   {g_classes.channel, PyExc_ValueError});
  g_classes.timeout = make_class(m, "ChannelTimeoutError", "A libTMC operation timed out (code TIMED_OUT).",
                                 {g_classes.channel, PyExc_TimeoutError});

  // C++ APIs that throw tmc::Error (Channel::open and friends) surface as the same classes.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      set_status_error(e.status());
    }
  });

  m.def(
      "_raise_status",
      [](const std::string& code_name, const std::string& message) {
#define TMC_PY_CODE(name, value, text) \
  if (code_name == #name) raise_status(Status(Code::name, message));
        TMC_STATUS_MAP(TMC_PY_CODE)
#undef TMC_PY_CODE
        throw py::value_error("unknown status name '" + code_name + "'");
      },
      py::arg("code"), py::arg("message"), "For tests: raise the exception libTMC raises for this status.");
}

}  // namespace tmc::python

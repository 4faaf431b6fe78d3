// libTMC status codes.
//
// One X-macro list generates the enum, tmc::status_name() and tmc::strerror(), in the
// style of libuv's UV_ERRNO_MAP. Failures are negative ints and OK is 0. MODULE_ERROR is
// returned when a module or a module repository is refused (tmc/modules.hpp).
#pragma once

#include <string>
#include <string_view>
#include <utility>

#define TMC_STATUS_MAP(X)                                                                    \
  X(OK, 0, "success")                                                                       \
  X(INVALID_ARGUMENT, -1, "invalid argument")                                               \
  X(INVALID_MANIFEST, -2, "invalid manifest")                                               \
  X(INVALID_CAPABILITIES, -3, "invalid capability file")                                    \
  X(NOT_AVAILABLE, -4, "property not available yet")                                        \
  X(UNKNOWN_STAGE, -5, "unknown stage kind")                                                \
  X(MALFORMED_PACKET, -6, "malformed packet")                                               \
  X(MESSAGE_TOO_LARGE, -7, "message too large")                                             \
  X(WOULD_BLOCK, -8, "operation would block")                                               \
  X(TIMED_OUT, -9, "timed out")                                                             \
  X(CLOSED, -10, "channel closed")                                                          \
  X(IO_ERROR, -11, "I/O error")                                                             \
  X(ADDRESS_IN_USE, -12, "address in use")                                                  \
  X(PERMISSION_DENIED, -13, "permission denied")                                            \
  X(NO_SUCH_INTERFACE, -14, "no such network interface")                                    \
  X(BAD_ADDRESS, -15, "bad network address")                                                \
  X(NOT_PERMITTED_BY_DUPLEXITY, -16, "operation not permitted by the channel's duplexity")  \
  X(MODULE_ERROR, -17, "module error")                                                      \
  X(INTERNAL, -18, "internal error")                                                        \
  X(DELIVERY_FAILED, -19, "reliable message not acknowledged by every required member")

namespace tmc {

enum class Code : int {
#define TMC_STATUS_ENUM(name, value, text) name = value,
  TMC_STATUS_MAP(TMC_STATUS_ENUM)
#undef TMC_STATUS_ENUM
};

/// The enum's spelling, e.g. "INVALID_MANIFEST".
std::string_view status_name(Code code) noexcept;
/// A short English description, e.g. "invalid manifest".
std::string_view strerror(Code code) noexcept;

/// A code plus a human-readable message naming what went wrong and where.
/// Cheap to return on success (empty message, no allocation).
class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() noexcept { return {}; }
  [[nodiscard]] bool is_ok() const noexcept { return code_ == Code::OK; }
  explicit operator bool() const noexcept { return is_ok(); }
  [[nodiscard]] Code code() const noexcept { return code_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  /// "INVALID_MANIFEST: manifest.yaml:3:1: unknown property 'gruop'".
  [[nodiscard]] std::string to_string() const;

 private:
  Code code_ = Code::OK;
  std::string message_;
};

/// Thrown by the C++ convenience APIs (Channel constructors, Manifest builders) that
/// cannot return a Status. Every public edge catches it or documents it.
class Error : public std::exception {
 public:
  explicit Error(Status s) : status_(std::move(s)), what_(status_.to_string()) {}
  [[nodiscard]] const Status& status() const noexcept { return status_; }
  [[nodiscard]] const char* what() const noexcept override { return what_.c_str(); }

 private:
  Status status_;
  std::string what_;
};

}  // namespace tmc

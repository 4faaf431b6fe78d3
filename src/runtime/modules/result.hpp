// Result<T>: a value or the Status that explains why there is none.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "tmc/status.hpp"

namespace tmc::modules {

/// Either a T or a failed Status. Built from a T (success) or a Status whose code is not OK.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status error) : v_(std::move(error)) { assert(!std::get<Status>(v_).is_ok()); }  // NOLINT

  [[nodiscard]] bool ok() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return ok(); }
  [[nodiscard]] T& value() & { return std::get<T>(v_); }
  [[nodiscard]] const T& value() const& { return std::get<T>(v_); }
  [[nodiscard]] T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  /// The failure; an OK Status when the result holds a value.
  [[nodiscard]] Status status() const { return ok() ? Status::ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

/// A refusal by the module repository: MODULE_ERROR with the message
/// "FILE[:LINE]: refused at step 'STEP'[ for module 'NAME']: REASON", so every refusal names
/// the file, the step and (when there is one) the module.
inline Status refusal(std::string_view step, std::string_view file, int line, std::string_view module,
                      std::string_view reason) {
  std::string m(file);
  if (line > 0) m += ":" + std::to_string(line);
  m += ": refused at step '";
  m += step;
  m += "'";
  if (!module.empty()) {
    m += " for module '";
    m += module;
    m += "'";
  }
  m += ": ";
  m += reason;
  return Status(Code::MODULE_ERROR, std::move(m));
}

}  // namespace tmc::modules

#include "tmc/status.hpp"

namespace tmc {

std::string_view status_name(Code code) noexcept {
  switch (code) {
#define TMC_STATUS_NAME(name, value, text) \
  case Code::name:                         \
    return #name;
    TMC_STATUS_MAP(TMC_STATUS_NAME)
#undef TMC_STATUS_NAME
  }
  return "UNKNOWN";
}

std::string_view strerror(Code code) noexcept {
  switch (code) {
#define TMC_STATUS_TEXT(name, value, text) \
  case Code::name:                         \
    return text;
    TMC_STATUS_MAP(TMC_STATUS_TEXT)
#undef TMC_STATUS_TEXT
  }
  return "unknown status";
}

std::string Status::to_string() const {
  std::string out(status_name(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

}  // namespace tmc

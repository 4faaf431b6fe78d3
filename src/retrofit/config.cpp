// Reading the retrofit section (see config.hpp). The section is read here with yaml-cpp;
// its lines are then blanked out of the text, so the manifest parser sees a plain manifest
// and reports its problems at the lines the user wrote.
#include "retrofit/config.hpp"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "tmc/diagnostics.hpp"

namespace tmc::retrofit {

bool Config::matches_local_port(std::uint16_t port) const noexcept {
  return std::find(local_ports.begin(), local_ports.end(), port) != local_ports.end();
}

bool Config::matches_destination(const sockaddr_in& a) const noexcept {
  return std::any_of(destinations.begin(), destinations.end(), [&](const Destination& d) { return d.matches(a); });
}

namespace {

// The text with the top-level `retrofit:` block replaced by empty lines (same line count).
std::string without_retrofit_block(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_block = false;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    const bool last = end == std::string_view::npos;
    if (last) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    const bool top_level = !line.empty() && line[0] != ' ' && line[0] != '\t' && line[0] != '#' && line[0] != '\r';
    if (top_level) in_block = line.rfind("retrofit:", 0) == 0 || line.rfind("retrofit :", 0) == 0;
    if (!in_block) out.append(line);
    if (!last) out.push_back('\n');
    pos = end + 1;
  }
  return out;
}

std::string where(std::string_view filename, const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return std::string(filename) + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": ";
}

bool parse_port(const std::string& s, std::uint16_t& out) {
  if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  const unsigned long v = std::stoul(s);
  if (v == 0 || v > 65535) return false;
  out = static_cast<std::uint16_t>(v);
  return true;
}

bool parse_destination(const std::string& s, Destination& d) {
  const std::size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  const std::string host = s.substr(0, colon);
  const std::string port = s.substr(colon + 1);
  if (host == "*") {
    d.any_host = true;
  } else {
    in_addr a{};
    if (inet_pton(AF_INET, host.c_str(), &a) != 1) return false;
    d.ip = a.s_addr;
  }
  if (port == "*") {
    d.any_port = true;
  } else {
    std::uint16_t p = 0;
    if (!parse_port(port, p)) return false;
    d.port = htons(p);
  }
  return !(d.any_host && d.any_port);
}

bool read_int(const YAML::Node& v, std::int64_t lo, std::int64_t hi, std::int64_t& out) {
  try {
    const auto x = v.as<std::int64_t>();
    if (x < lo || x > hi) return false;
    out = x;
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

void parse_section(const YAML::Node& sec, std::string_view filename, Config& out, std::vector<std::string>& errs) {
  if (!sec.IsMap()) {
    errs.push_back(where(filename, sec) + "'retrofit' must be a map (local ports, destinations, ...)");
    return;
  }
  bool names_sockets = false;
  for (const auto& kv : sec) {
    const std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    const std::string at = where(filename, kv.first);
    if ((key == "local ports" || key == "destinations") && v.IsSequence() && v.size() > 0) names_sockets = true;
    if (key == "local ports") {
      if (!v.IsSequence()) {
        errs.push_back(at + "'local ports' must be a list of ports, e.g. [9000]");
        continue;
      }
      for (const auto& p : v) {
        std::uint16_t port = 0;
        if (!p.IsScalar() || !parse_port(p.Scalar(), port)) {
          errs.push_back(where(filename, p) + "'local ports': not a port (1..65535): '" + (p.IsScalar() ? p.Scalar() : "?") + "'");
        } else {
          out.local_ports.push_back(port);
        }
      }
    } else if (key == "destinations") {
      if (!v.IsSequence()) {
        errs.push_back(at + "'destinations' must be a list of \"IPv4:PORT\" (either may be *)");
        continue;
      }
      for (const auto& p : v) {
        Destination d;
        if (!p.IsScalar() || !parse_destination(p.Scalar(), d)) {
          errs.push_back(where(filename, p) + "'destinations': expected \"IPv4:PORT\", \"*:PORT\" or \"IPv4:*\", got '" +
                         (p.IsScalar() ? p.Scalar() : "?") + "'");
        } else {
          out.destinations.push_back(d);
        }
      }
    } else if (key == "unicast") {
      const std::string s = v.IsScalar() ? v.Scalar() : "";
      if (s == "addressed") {
        out.unicast = UnicastMode::addressed;
      } else if (s == "fan-out") {
        out.unicast = UnicastMode::fan_out;
      } else {
        errs.push_back(at + "'unicast' must be 'addressed' or 'fan-out', got '" + s + "'");
      }
    } else if (key == "wait for members") {
      if (!read_int(v, 0, 1000, out.wait_for_members)) errs.push_back(at + "'wait for members' must be 0..1000");
    } else if (key == "wait timeout ms") {
      if (!read_int(v, 0, 3'600'000, out.wait_timeout_ms)) errs.push_back(at + "'wait timeout ms' must be 0..3600000");
    } else if (key == "linger ms") {
      if (!read_int(v, 0, 3'600'000, out.linger_ms)) errs.push_back(at + "'linger ms' must be 0..3600000");
    } else {
      errs.push_back(at + "unknown retrofit property '" + key +
                     "' (known: local ports, destinations, unicast, wait for members, wait timeout ms, linger ms)");
    }
  }
  if (!names_sockets)
    errs.push_back(where(filename, sec) + "'retrofit' rewires nothing: give 'local ports' and/or 'destinations'");
}

}  // namespace

bool parse_config(std::string_view text, std::string_view filename, Config& out, std::string& problems) {
  out = Config{};
  std::vector<std::string> errs;
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    const YAML::Node sec = root.IsMap() ? root["retrofit"] : YAML::Node();
    if (!sec) {
      errs.push_back(std::string(filename) + ": no 'retrofit' section: nothing says which sockets to rewire");
    } else {
      parse_section(sec, filename, out, errs);
    }
  } catch (const YAML::Exception& e) {
    errs.push_back(std::string(filename) + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  Diagnostics diag;
  if (!parse_manifest(without_retrofit_block(text), filename, out.manifest, diag)) errs.push_back(diag.to_string());
  problems.clear();
  for (const auto& e : errs) problems += e + (e.empty() || e.back() == '\n' ? "" : "\n");
  return errs.empty();
}

bool load_config(const std::string& path, Config& out, std::string& problems) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    problems = path + ": cannot open\n";
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path, out, problems);
}

}  // namespace tmc::retrofit

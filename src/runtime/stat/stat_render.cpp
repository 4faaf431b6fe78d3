// What `tmc stat` prints for scripts: JSON, and the Prometheus text exposition format.
#include <cmath>
#include <cstdio>
#include <map>

#include "runtime/stat/stat_file.hpp"

namespace tmc::detail {

namespace {

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

/// Prometheus sample values: Go's float syntax, with NaN and +Inf/-Inf spelled its way.
std::string prom_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

std::string stat_json(const std::vector<StatProcess>& procs) {
  std::string out = "{\"processes\":[";
  for (std::size_t i = 0; i < procs.size(); ++i) {
    const StatProcess& p = procs[i];
    if (i > 0) out += ',';
    out += "{\"pid\":" + std::to_string(p.pid) + ",\"start_time\":" + std::to_string(p.start_time) +
           ",\"created_unix_ns\":" + std::to_string(p.created_unix_ns) + ",\"command\":";
    json_string(out, p.command);
    out += ",\"file\":";
    json_string(out, p.path);
    out += ",\"stale\":";
    out += p.stale ? "true" : "false";
    if (p.stale) {
      out += ",\"stale_reason\":";
      json_string(out, p.stale_reason);
    }
    out += ",\"channels\":[";
    for (std::size_t j = 0; j < p.channels.size(); ++j) {
      const StatChannel& c = p.channels[j];
      if (j > 0) out += ',';
      out += "{\"slot\":" + std::to_string(c.slot) + ",\"channel\":";
      json_string(out, c.channel);
      out += ",\"member\":";
      json_string(out, c.member);
      out += ",\"group\":";
      json_string(out, c.group);
      out += ",\"published_unix_ns\":" + std::to_string(c.published_unix_ns) +
             ",\"publishes\":" + std::to_string(c.publishes) + ",\"members\":[";
      for (std::size_t k = 0; k < c.members.size(); ++k) {
        if (k > 0) out += ',';
        json_string(out, c.members[k]);
      }
      out += "],\"counters\":{";
      for (std::size_t k = 0; k < c.counters.size(); ++k) {
        if (k > 0) out += ',';
        json_string(out, c.counters[k].first);
        out += ':' + std::to_string(c.counters[k].second);
      }
      out += "},\"gauges\":{";
      for (std::size_t k = 0; k < c.gauges.size(); ++k) {
        if (k > 0) out += ',';
        json_string(out, c.gauges[k].first);
        out += ':' + number(c.gauges[k].second);
      }
      out += "},\"plan\":";
      json_string(out, c.plan);
      out += '}';
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

std::string prometheus_metric_name(std::string_view counter) {
  std::string out = "tmc_";
  for (const char c : counter) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
  }
  return out;
}

std::string prometheus_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string stat_prometheus(const std::vector<StatProcess>& procs) {
  // Every sample of a metric must follow its HELP and TYPE lines as one group, so the
  // samples are collected per metric first (in the order the metrics first appear).
  struct Metric {
    std::string source;  ///< the counter or gauge name it comes from
    bool gauge = false;
    std::string samples;
  };
  std::vector<Metric> metrics;
  std::map<std::string, std::size_t> index;
  auto sample = [&](const std::string& source, bool gauge, const std::string& labels, const std::string& value) {
    std::string name = prometheus_metric_name(source);
    auto it = index.find(name);
    if (it != index.end() && metrics[it->second].gauge != gauge) {
      name += gauge ? "_gauge" : "_counter";  // two sources met in one name: keep them apart
      it = index.find(name);
    }
    if (it == index.end()) {
      it = index.emplace(name, metrics.size()).first;
      metrics.push_back(Metric{source, gauge, {}});
    }
    metrics[it->second].samples += name + labels + ' ' + value + '\n';
  };
  for (const StatProcess& p : procs) {
    if (p.stale) continue;
    for (const StatChannel& c : p.channels) {
      const std::string labels = "{pid=\"" + std::to_string(p.pid) + "\",channel=\"" +
                                 prometheus_label_value(c.channel) + "\",member=\"" +
                                 prometheus_label_value(c.member) + "\"}";
      for (const auto& [n, v] : c.counters) sample(n, false, labels, std::to_string(v));
      for (const auto& [n, v] : c.gauges) sample(n, true, labels, prom_number(v));
    }
  }
  std::string out;
  for (const auto& [name, i] : index) {
    const Metric& m = metrics[i];
    // HELP text escapes backslash and newline only.
    std::string help;
    for (const char c : m.source) help += c == '\\' ? std::string("\\\\") : c == '\n' ? std::string("\\n") : std::string(1, c);
    out += "# HELP " + name + " libTMC " + (m.gauge ? "gauge " : "counter ") + help + '\n';
    out += "# TYPE " + name + (m.gauge ? " gauge\n" : " counter\n");
    out += m.samples;
  }
  return out;
}

}  // namespace tmc::detail

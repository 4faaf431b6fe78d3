// `tmc stat`: reads the live-counters files of libTMC processes (runtime/stat/stat_file.hpp)
// and prints them for people (a listing, or --watch with rates per second), for scripts
// (--json) or for Prometheus (--prometheus).
#include "tmc_stat.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <thread>
#include <tuple>

#include "runtime/stat/stat_file.hpp"

namespace tmc_tool {

namespace {

using tmc::detail::StatChannel;
using tmc::detail::StatProcess;

/// Counter values of one snapshot, by (pid, slot, counter), for rates.
using Values = std::map<std::tuple<std::uint64_t, std::size_t, std::string>, std::uint64_t>;

std::string gauge_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void print_channel(std::ostream& out, const StatProcess& p, const StatChannel& c, const StatOptions& opts,
                   const Values* before, double dt_s) {
  out << "  channel " << c.channel << "  member " << c.member << "  group " << c.group << "\n";
  out << "    members:";
  for (const std::string& m : c.members) out << ' ' << m;
  // The shell's gauges on the first line, then one line per stage category.
  out << "\n    gauges: ";
  std::string_view category;
  for (std::size_t i = 0; i < c.gauges.size(); ++i) {
    const std::string_view name = c.gauges[i].first;
    const std::size_t dot = name.find('.');
    const std::string_view cat = dot == std::string_view::npos ? std::string_view() : name.substr(0, dot);
    if (i > 0) out << (cat == category ? "  " : "\n            ");
    category = cat;
    out << name << '=' << gauge_text(c.gauges[i].second);
  }
  out << "\n";
  for (const auto& [name, value] : c.counters) {
    if (value == 0 && !opts.all) continue;
    char line[160];
    std::snprintf(line, sizeof line, "    %-40s %16llu", name.c_str(), static_cast<unsigned long long>(value));
    out << line;
    if (before != nullptr && dt_s > 0) {
      auto it = before->find({p.pid, c.slot, name});
      const std::uint64_t prev = it != before->end() ? it->second : value;
      const double rate = value >= prev ? static_cast<double>(value - prev) / dt_s : 0.0;
      std::snprintf(line, sizeof line, "  %12.1f/s", rate);
      out << line;
    }
    out << "\n";
  }
}

void print_listing(std::ostream& out, const std::vector<StatProcess>& procs, const std::vector<std::string>& errors,
                   const StatOptions& opts, const Values* before, double dt_s) {
  std::size_t live = 0;
  for (const StatProcess& p : procs) {
    if (p.stale) {
      out << "pid " << p.pid << "  " << p.command << "  STALE: " << p.stale_reason
          << " (tmc stat --clean removes " << p.path << ")\n";
      continue;
    }
    ++live;
    out << "pid " << p.pid << "  " << p.command << "  " << p.channels.size()
        << (p.channels.size() == 1 ? " channel\n" : " channels\n");
    for (const StatChannel& c : p.channels) print_channel(out, p, c, opts, before, dt_s);
  }
  if (live == 0) out << "no live libTMC process publishes counters in " << opts.dir << "\n";
  for (const std::string& e : errors) out << "unreadable: " << e << "\n";
}

Values values_of(const std::vector<StatProcess>& procs) {
  Values v;
  for (const StatProcess& p : procs) {
    for (const StatChannel& c : p.channels) {
      for (const auto& [name, value] : c.counters) v[{p.pid, c.slot, name}] = value;
    }
  }
  return v;
}

int clean(const std::string& dir) {
  std::vector<std::string> errors;
  int removed = 0;
  for (const StatProcess& p : tmc::detail::read_stat_dir(dir, errors)) {
    if (!p.stale) continue;
    if (::unlink(p.path.c_str()) == 0) {
      std::cout << "removed " << p.path << " (" << p.stale_reason << ")\n";
      ++removed;
    } else {
      std::cerr << "tmc stat: could not remove " << p.path << "\n";
    }
  }
  std::cout << removed << (removed == 1 ? " stale file removed\n" : " stale files removed\n");
  for (const std::string& e : errors) std::cerr << "unreadable: " << e << "\n";
  return 0;
}

}  // namespace

CLI::App* add_stat_command(CLI::App& app, StatOptions& opts) {
  auto* stat = app.add_subcommand("stat", "Show the live counters of the libTMC processes on this host");
  auto* json = stat->add_flag("--json", opts.json, "one JSON document, for scripts");
  auto* prometheus = stat->add_flag("--prometheus", opts.prometheus, "the Prometheus text exposition format");
  auto* watch = stat->add_flag("--watch", opts.watch, "refresh every --interval seconds, with rates per second");
  json->excludes(prometheus);
  watch->excludes(json)->excludes(prometheus);
  stat->add_option("--interval", opts.interval_s, "seconds between refreshes with --watch (default 1)")
      ->check(CLI::Range(0.1, 3600.0));
  stat->add_option("--count", opts.count, "with --watch: stop after this many refreshes")->check(CLI::NonNegativeNumber);
  stat->add_flag("--all", opts.all, "list counters that are zero too");
  stat->add_flag("--clean", opts.clean, "remove the files that crashed processes left behind");
  stat->add_option("--dir", opts.dir, "where the files are (default $TMC_STAT_DIR or /dev/shm/libtmc-<uid>)");
  return stat;
}

int run_stat(const StatOptions& in) {
  StatOptions opts = in;
  if (opts.dir.empty()) opts.dir = tmc::detail::stat_dir();
  if (opts.clean) return clean(opts.dir);
  std::vector<std::string> errors;
  if (opts.json || opts.prometheus) {
    const std::vector<StatProcess> procs = tmc::detail::read_stat_dir(opts.dir, errors);
    std::cout << (opts.json ? tmc::detail::stat_json(procs) : tmc::detail::stat_prometheus(procs));
    for (const std::string& e : errors) std::cerr << "tmc stat: unreadable: " << e << "\n";
    return 0;
  }
  if (!opts.watch) {
    print_listing(std::cout, tmc::detail::read_stat_dir(opts.dir, errors), errors, opts, nullptr, 0);
    return 0;
  }
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  Values before;
  auto then = std::chrono::steady_clock::now();
  for (int n = 0; opts.count == 0 || n < opts.count; ++n) {
    if (n > 0) std::this_thread::sleep_for(std::chrono::duration<double>(opts.interval_s));
    errors.clear();
    const std::vector<StatProcess> procs = tmc::detail::read_stat_dir(opts.dir, errors);
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - then).count();
    if (tty) std::cout << "\x1b[H\x1b[2J";  // home, clear screen
    print_listing(std::cout, procs, errors, opts, n > 0 ? &before : nullptr, dt);
    if (!tty) std::cout << "\n";
    std::cout.flush();
    before = values_of(procs);
    then = now;
  }
  return 0;
}

}  // namespace tmc_tool

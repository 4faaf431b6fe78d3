// Live counters: the stat file's layout, a channel publishing into it and a reader reading
// it back, stale files, the Prometheus output, and `tmc stat` against a real child process
// that is then killed.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <doctest/doctest.h>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "runtime/stat/stat_file.hpp"
#include "runtime_test_util.hpp"
#include "tmc/channel.hpp"

using namespace std::chrono_literals;
using tmc::test::manifest_for;

namespace {

namespace d = tmc::detail;

/// A fresh directory under /tmp, removed with everything in it at the end of the scope.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tmc-stat-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { (void)std::system(("rm -rf '" + path + "'").c_str()); }
};

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << bytes;
}

/// Polls the process's own stat file until `pred` holds for the channel `id` (bounded by
/// attempts, not by a time assertion).
bool wait_published(const std::string& id, d::StatChannel& out,
                    const std::function<bool(const d::StatChannel&)>& pred) {
  for (int attempt = 0; attempt < 300; ++attempt) {
    d::StatProcess p;
    std::string error;
    const std::string path = d::StatWriter::instance().path();
    if (!path.empty() && d::read_stat_file(path, p, error)) {
      for (const auto& c : p.channels) {
        if (c.channel == id && pred(c)) {
          out = c;
          return true;
        }
      }
    }
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::uint64_t counter(const d::StatChannel& c, const std::string& name) {
  for (const auto& [n, v] : c.counters) {
    if (n == name) return v;
  }
  return 0;
}

/// Runs the tmc tool; returns its standard output.
std::string run_tool(const std::string& args, int* status = nullptr) {
  const std::string cmd = std::string(TMC_TOOL_PATH) + " " + args;
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  std::string out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int rc = ::pclose(f);
  if (status != nullptr) *status = rc;
  return out;
}

}  // namespace

TEST_CASE("the stat file's header: magic, layout version, sizes, pid and start time") {
  tmc::Channel c = tmc::Channel::open(manifest_for("stat-layout", 10, "layout"));
  d::StatChannel ch;
  REQUIRE(wait_published("stat-layout", ch, [](const d::StatChannel&) { return true; }));
  const std::string path = d::StatWriter::instance().path();
  CHECK(path == d::stat_dir() + "/" + std::to_string(::getpid()) + ".tmcstat");
  const std::string bytes = read_all(path);
  REQUIRE(bytes.size() == sizeof(d::StatHeader) + d::kStatMaxChannels * sizeof(d::StatSlot));
  d::StatHeader h;
  std::memcpy(static_cast<void*>(&h), bytes.data(), sizeof h);
  CHECK(h.magic.load() == d::kStatMagic);
  CHECK(std::memcmp(bytes.data(), "TMCSTAT1", 8) == 0);
  CHECK(h.layout_version == d::kStatLayoutVersion);
  CHECK(h.header_bytes == sizeof(d::StatHeader));
  CHECK(h.slot_bytes == sizeof(d::StatSlot));
  CHECK(h.slot_count == d::kStatMaxChannels);
  CHECK(h.pid == static_cast<std::uint64_t>(::getpid()));
  CHECK(h.start_time != 0);
  CHECK(h.start_time == d::process_start_time(static_cast<std::uint64_t>(::getpid())));
  CHECK(std::string(h.command).find("tmc_runtime") == 0);
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("a channel publishes its counters, gauges, plan and view; closing frees its slot") {
  tmc::Manifest m = manifest_for("stat-roundtrip", 11, "alice");
  m.members = {"alice", "bob"};
  m.point_to_point_ordering = tmc::OrderingMode::strict;  // sequence numbers: a loss ratio
  tmc::Channel a = tmc::Channel::open(m);
  m.name = "bob";
  tmc::Channel b = tmc::Channel::open(m);
  for (int i = 0; i < 25; ++i) REQUIRE(a.send("m" + std::to_string(i)));
  REQUIRE(tmc::test::receive_n(b, 25).size() == 25);

  d::StatChannel ch;
  REQUIRE(wait_published("stat-roundtrip", ch, [](const d::StatChannel& c) {
    return c.member == "bob" && counter(c, "shell.delivered_messages") == 25;
  }));
  // The published values are what stats() says.
  const tmc::ChannelStats s = b.stats();
  CHECK(counter(ch, "shell.datagrams_received") == s.counter("shell.datagrams_received"));
  CHECK(ch.counters.size() == s.counters.size());
  CHECK(ch.group == m.group + ":" + std::to_string(m.port));
  CHECK(ch.plan == b.plan().to_string());
  CHECK(ch.plan.find("ordering.seq") != std::string::npos);
  CHECK(std::set<std::string>(ch.members.begin(), ch.members.end()) == std::set<std::string>{"alice", "bob"});
  bool has_loss = false;
  for (const auto& [n, v] : ch.gauges) {
    if (n == "loss_ratio") {
      has_loss = true;
      CHECK(v == 0.0);
    }
  }
  CHECK(has_loss);
  CHECK(ch.publishes > 0);

  d::StatChannel sender;
  REQUIRE(wait_published("stat-roundtrip", sender, [](const d::StatChannel& c) {
    return c.member == "alice" && counter(c, "pipeline.sent_messages") == 25;
  }));
  CHECK(sender.slot != ch.slot);

  // Closed: the slot is free again, so the channel is gone from the file.
  b.close();
  d::StatProcess p;
  std::string error;
  REQUIRE(d::read_stat_file(d::StatWriter::instance().path(), p, error));
  for (const auto& c : p.channels) CHECK_FALSE((c.channel == "stat-roundtrip" && c.member == "bob"));
}

TEST_CASE("the stages' gauges are published after the shell's, as stats() names them") {
  tmc::Manifest m = manifest_for("stat-gauges", 18, "alice");
  m.members = {"alice", "bob"};
  m.reliability.enabled = true;  // reliability.arq: an RTT estimate from bob's acks
  tmc::Channel a = tmc::Channel::open(m);
  m.name = "bob";
  tmc::Channel b = tmc::Channel::open(m);
  REQUIRE(a.wait_for_members(1, std::chrono::seconds(10)));
  for (int i = 0; i < 20; ++i) REQUIRE(a.send("m" + std::to_string(i)));
  REQUIRE(tmc::test::receive_n(b, 20).size() == 20);

  auto gauge = [](const d::StatChannel& c, const std::string& name) {
    for (const auto& [n, v] : c.gauges) {
      if (n == name) return v;
    }
    return -1.0;
  };
  d::StatChannel ch;
  REQUIRE(wait_published("stat-gauges", ch, [&](const d::StatChannel& c) {
    return c.member == "alice" && gauge(c, "reliability.srtt_ns") > 0;
  }));
  const tmc::ChannelStats s = a.stats();
  REQUIRE(!s.gauges.empty());
  CHECK(s.gauge("reliability.srtt_ns") > 0);
  CHECK(s.gauge("reliability.rto_ns") >= s.gauge("reliability.srtt_ns"));
  CHECK(std::isnan(s.gauge("no.such_gauge")));
  // The file holds the shell's gauges, then every one of the stages', by the same names.
  REQUIRE(ch.gauges.size() > s.gauges.size());
  const std::size_t shell = ch.gauges.size() - s.gauges.size();
  CHECK(ch.gauges[0].first == "send_latency_ns");
  for (std::size_t i = 0; i < s.gauges.size(); ++i) CHECK(ch.gauges[shell + i].first == s.gauges[i].first);
  CHECK(gauge(ch, "reliability.rto_ns") > 0);
}

TEST_CASE("the file goes when the process's last publishing channel closes, and comes back") {
  // Every earlier test case closed its channels, so this one is the process's only one.
  tmc::Channel c = tmc::Channel::open(manifest_for("stat-last", 9, "last"));
  const std::string path = d::StatWriter::instance().path();
  REQUIRE_FALSE(path.empty());
  CHECK(::access(path.c_str(), F_OK) == 0);
  c.close();
  CHECK(::access(path.c_str(), F_OK) != 0);
  CHECK(d::StatWriter::instance().path().empty());
  tmc::Channel again = tmc::Channel::open(manifest_for("stat-last", 9, "again"));
  d::StatChannel ch;
  REQUIRE(wait_published("stat-last", ch, [](const d::StatChannel& x) { return x.member == "again"; }));
  CHECK(d::StatWriter::instance().path() == path);
}

TEST_CASE("after update() the published plan is the new one") {
  tmc::Channel c = tmc::Channel::open(manifest_for("stat-update", 8, "upd"));
  d::StatChannel ch;
  REQUIRE(wait_published("stat-update", ch, [](const d::StatChannel&) { return true; }));
  CHECK(ch.plan.find("checksum.crc32c") == std::string::npos);
  REQUIRE(c.update(tmc::Value(tmc::Value::Map{{"error checking", tmc::Value(true)}})));
  REQUIRE(wait_published("stat-update", ch, [](const d::StatChannel& x) {
    return x.plan.find("checksum.crc32c") != std::string::npos;
  }));
  CHECK(ch.plan == c.plan().to_string());
  CHECK(counter(ch, "shell.updates") == 1);
}

TEST_CASE("publish_stats = false keeps a channel out of the file") {
  tmc::OpenOptions opts;
  opts.publish_stats = false;
  tmc::Channel quiet = tmc::Channel::open(manifest_for("stat-quiet", 12, "quiet"), opts);
  tmc::Channel loud = tmc::Channel::open(manifest_for("stat-loud", 13, "loud"));
  d::StatChannel ch;
  REQUIRE(wait_published("stat-loud", ch, [](const d::StatChannel&) { return true; }));
  d::StatProcess p;
  std::string error;
  REQUIRE(d::read_stat_file(d::StatWriter::instance().path(), p, error));
  for (const auto& c : p.channels) CHECK(c.channel != "stat-quiet");
}

TEST_CASE("stale files: a dead pid, a reused pid, and files that are not stat files") {
  tmc::Channel c = tmc::Channel::open(manifest_for("stat-stale", 14, "stale"));
  d::StatChannel ch;
  REQUIRE(wait_published("stat-stale", ch, [](const d::StatChannel&) { return true; }));
  const std::string live = read_all(d::StatWriter::instance().path());
  REQUIRE(live.size() > sizeof(d::StatHeader));

  // A pid that is gone: a child that has exited and been reaped.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) _exit(0);
  REQUIRE(::waitpid(child, nullptr, 0) == child);

  TempDir dir;
  auto with_header = [&live](std::uint64_t pid, std::uint64_t start_time) {
    std::string bytes = live;
    auto* h = reinterpret_cast<d::StatHeader*>(bytes.data());
    h->pid = pid;
    h->start_time = start_time;
    return bytes;
  };
  const auto self = static_cast<std::uint64_t>(::getpid());
  const std::uint64_t self_start = d::process_start_time(self);
  write_all(dir.path + "/" + std::to_string(child) + ".tmcstat", with_header(static_cast<std::uint64_t>(child), 1));
  write_all(dir.path + "/1000001.tmcstat", with_header(self, self_start + 1));  // pid reused
  write_all(dir.path + "/1000002.tmcstat", with_header(self, self_start));      // alive
  std::string bad_version = live;
  reinterpret_cast<d::StatHeader*>(bad_version.data())->layout_version = d::kStatLayoutVersion + 1;
  write_all(dir.path + "/1000003.tmcstat", bad_version);
  write_all(dir.path + "/1000004.tmcstat", std::string(4096, 'x'));
  write_all(dir.path + "/notes.txt", "not a stat file, not even by name");

  std::vector<std::string> errors;
  const std::vector<d::StatProcess> procs = d::read_stat_dir(dir.path, errors);
  REQUIRE(procs.size() == 3);
  REQUIRE(errors.size() == 2);
  const std::string all_errors = errors[0] + "\n" + errors[1];
  CHECK(all_errors.find("1000003.tmcstat: layout version") != std::string::npos);
  CHECK(all_errors.find("1000004.tmcstat: not a libTMC stat file (bad magic)") != std::string::npos);
  int stale = 0;
  for (const d::StatProcess& p : procs) {
    if (p.pid == static_cast<std::uint64_t>(child)) {
      CHECK(p.stale);
      CHECK(p.stale_reason.find("is gone") != std::string::npos);
      ++stale;
    } else if (p.path.find("1000001") != std::string::npos) {
      CHECK(p.stale);
      CHECK(p.stale_reason.find("another process") != std::string::npos);
      ++stale;
    } else {
      CHECK_FALSE(p.stale);
      CHECK_FALSE(p.channels.empty());
    }
  }
  CHECK(stale == 2);

  // --clean removes exactly the two stale files.
  const std::string out = run_tool("stat --clean --dir " + dir.path);
  CHECK(out.find("2 stale files removed") != std::string::npos);
  CHECK(::access((dir.path + "/" + std::to_string(child) + ".tmcstat").c_str(), F_OK) != 0);
  CHECK(::access((dir.path + "/1000001.tmcstat").c_str(), F_OK) != 0);
  CHECK(::access((dir.path + "/1000002.tmcstat").c_str(), F_OK) == 0);
  CHECK(::access((dir.path + "/1000003.tmcstat").c_str(), F_OK) == 0);  // unreadable, not stale
}

TEST_CASE("the Prometheus output: HELP and TYPE before each metric's samples, escaped labels") {
  d::StatProcess live;
  live.pid = 4242;
  d::StatChannel c;
  c.channel = "odd \"channel\"\\name";
  c.member = "line\nbreak";
  c.counters = {{"pipeline.sent_messages", 7}, {"reliability.retransmits", 0}, {"shell.weird-name!", 3}};
  c.gauges = {{"loss_ratio", -1}, {"send_latency_ns", 1234.5}};
  live.channels.push_back(c);
  c.channel = "second";
  c.member = "m2";
  c.slot = 1;
  live.channels.push_back(c);
  d::StatProcess stale = live;
  stale.pid = 99;
  stale.stale = true;
  const std::string text = d::stat_prometheus({live, stale});

  const std::regex comment(R"(^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$)");
  const std::string label_value = R"("(?:[^"\\\n]|\\\\|\\"|\\n)*")";
  const std::string label = "[a-zA-Z_][a-zA-Z0-9_]*=" + label_value;
  const std::regex sample("^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{" + label + "(?:," + label +
                          ")*\\})? (-?[0-9]+(?:\\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|NaN|[+-]Inf)$");
  std::istringstream lines(text);
  std::string line;
  std::set<std::string> typed;
  std::set<std::string> finished;  // metrics whose sample group has ended
  std::string current;
  int samples = 0;
  while (std::getline(lines, line)) {
    std::smatch mm;
    if (std::regex_match(line, mm, comment)) {
      const std::string name = mm[2];
      if (mm[1] == "TYPE") {
        CHECK(typed.insert(name).second);  // one TYPE per metric
        CHECK((mm[3] == "counter" || mm[3] == "gauge"));
        if (!current.empty()) finished.insert(current);
        current = name;
      }
      continue;
    }
    INFO(line);
    REQUIRE(std::regex_match(line, mm, sample));
    CHECK(mm[1] == current);                 // samples follow their own TYPE line
    CHECK(finished.count(mm[1]) == 0);       // and are not split into two groups
    CHECK(line.find("pid=\"4242\"") != std::string::npos);  // the stale process is left out
    ++samples;
  }
  CHECK(samples == 2 * 5);
  CHECK(typed.count("tmc_pipeline_sent_messages") == 1);
  CHECK(typed.count("tmc_shell_weird_name_") == 1);
  CHECK(text.find("# TYPE tmc_loss_ratio gauge\n") != std::string::npos);
  CHECK(text.find("# TYPE tmc_pipeline_sent_messages counter\n") != std::string::npos);
  CHECK(text.find(R"(tmc_pipeline_sent_messages{pid="4242",channel="odd \"channel\"\\name",member="line\nbreak"} 7)") !=
        std::string::npos);
  CHECK(d::prometheus_metric_name("drops.checksum") == "tmc_drops_checksum");
  CHECK(d::prometheus_label_value("a\"b\\c\nd") == R"(a\"b\\c\nd)");
}

// The child side of the next test: runs only in the process that test starts.
TEST_CASE("stat child (helper; runs only when started by the tmc stat test)") {
  const char* spec = std::getenv("TMC_TEST_STAT_CHILD");
  if (spec == nullptr) return;
  const std::string s(spec);  // "group port"
  const auto space = s.find(' ');
  REQUIRE(space != std::string::npos);
  tmc::Manifest m;
  m.id = "stat-child";
  m.name = "child";
  m.group = s.substr(0, space);
  m.port = std::stoi(s.substr(space + 1));
  auto c = tmc::Channel::open(m);
  // Until the parent kills it; bounded, so that a failed parent leaves no process behind.
  for (int i = 0; i < 3000; ++i) {
    CHECK(c.send("tick"));
    std::this_thread::sleep_for(10ms);
  }
}

TEST_CASE("tmc stat --json sees a child process's channel, then reports it stale after kill -9") {
  TempDir dir;
  tmc::Manifest m = manifest_for("stat-child", 15, "parent");
  const std::string spec = m.group + " " + std::to_string(m.port);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setenv("TMC_TEST_STAT_CHILD", spec.c_str(), 1);
    setenv("TMC_STAT_DIR", dir.path.c_str(), 1);
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execl("/proc/self/exe", "tmc_runtime_tests", "--test-case=stat child*", "--no-intro=true",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::string pid_field = "\"pid\":" + std::to_string(pid) + ",";
  std::string out;
  bool seen = false;
  for (int attempt = 0; attempt < 300 && !seen; ++attempt) {
    out = run_tool("stat --json --dir " + dir.path);
    seen = out.find(pid_field) != std::string::npos && out.find("\"channel\":\"stat-child\"") != std::string::npos &&
           out.find("\"pipeline.sent_messages\":0") == std::string::npos &&
           out.find("\"pipeline.sent_messages\":") != std::string::npos;
    if (!seen) std::this_thread::sleep_for(20ms);
  }
  INFO(out);
  CHECK(seen);
  CHECK(out.find("\"stale\":false") != std::string::npos);
  CHECK(out.find("\"member\":\"child\"") != std::string::npos);
  CHECK(out.find("\"members\":[\"child\"]") != std::string::npos);

  // The human listing and Prometheus show it too.
  CHECK(run_tool("stat --dir " + dir.path).find("channel stat-child  member child") != std::string::npos);
  const std::string prom = run_tool("stat --prometheus --dir " + dir.path);
  CHECK(prom.find("tmc_pipeline_sent_messages{pid=\"" + std::to_string(pid) +
                  "\",channel=\"stat-child\",member=\"child\"} ") != std::string::npos);

  REQUIRE(::kill(pid, SIGKILL) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status));

  out = run_tool("stat --json --dir " + dir.path);
  CHECK(out.find(pid_field) != std::string::npos);
  CHECK(out.find("\"stale\":true") != std::string::npos);
  CHECK(out.find("is gone") != std::string::npos);
  CHECK(run_tool("stat --dir " + dir.path).find("STALE") != std::string::npos);
  CHECK(run_tool("stat --prometheus --dir " + dir.path).find("stat-child") == std::string::npos);
  CHECK(run_tool("stat --clean --dir " + dir.path).find("1 stale file removed") != std::string::npos);
  CHECK(::access((dir.path + "/" + std::to_string(pid) + ".tmcstat").c_str(), F_OK) != 0);
}

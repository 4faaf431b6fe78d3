// tmc-demo: the paper's Fig. 3 on one host. Three member processes (alice, bob, carol)
// join two channels over UDP multicast on the loopback interface (no configuration, no
// root) and every member sends on both:
//
//   orders     point-to-point ordering + error checking (Fig. 3's first channel, without
//              reliability, which a later issue brings): each sender's messages arrive in
//              the order sent, stale ones are dropped, corrupted ones are detected.
//   telemetry  best effort: no stages at all, the cheapest channel libTMC can give.
//
// The parent prints each channel's manifest and plan, starts the members, releases them
// together once all have joined, and prints what each member delivered (per sender:
// count, first/last sequence number, whether it was in order) and its counters. It exits
// non-zero when a promise did not hold: an out-of-order or damaged delivery on "orders",
// or a member that heard nothing from a peer (multicast on this host is broken then).
//
//   tmc-demo [--orders N] [--telemetry N] [--port P] [--reorder PROBABILITY]
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <tmc/channel.hpp>

namespace {

using namespace std::chrono_literals;

const std::array<const char*, 3> kMembers = {"alice", "bob", "carol"};

struct Config {
  int orders = 300;     ///< per member
  int telemetry = 600;  ///< per member
  int port = 0;         ///< orders' port; telemetry uses port + 1
  double reorder = 0;   ///< fault injection on "orders": probability a datagram is held back
};

/// With --reorder, the orders channel gets a fault-injection stage that holds datagrams
/// back behind later ones, so the ordering stage has real work: stale datagrams are dropped
/// (counted as drops.stale) and the in-order check below becomes a real test.
tmc::FaultSpec order_faults(const Config& cfg) {
  tmc::FaultSpec f;
  f.reorder = cfg.reorder;
  f.seed = 42;
  return f;
}

tmc::Manifest orders_manifest(const Config& cfg, const std::string& name) {
  // The same channel as examples/manifests/ordered-checked.yaml, written with the builder.
  return tmc::ManifestBuilder("demo-orders")
      .name(name)
      .members({kMembers.begin(), kMembers.end()})
      .group("239.255.42.1")
      .port(cfg.port)
      .point_to_point_ordering(tmc::OrderingMode::drop_stale)
      .error_checking(true)
      .max_message_bytes(1400)
      .faults(order_faults(cfg))
      .build();
}

tmc::Manifest telemetry_manifest(const Config& cfg, const std::string& name) {
  // The same channel as examples/manifests/best-effort.yaml.
  return tmc::ManifestBuilder("demo-telemetry")
      .name(name)
      .members({kMembers.begin(), kMembers.end()})
      .group("239.255.42.2")
      .port(cfg.port + 1)
      .max_message_bytes(1400)
      .build();
}

std::string indent(const std::string& text, const std::string& pad) {
  std::string out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out += pad + line + "\n";
  return out;
}

// --- payloads ---------------------------------------------------------------------------
// "<sender> <kind> <seq> <body>": readable in a packet capture, and every field is checked
// on delivery so a damaged or misattributed message is noticed.

std::string order_payload(const std::string& me, int seq) {
  return me + " order " + std::to_string(seq) + " item=widget-" + std::to_string(seq % 17) +
         " qty=" + std::to_string(1 + seq % 5);
}

std::string telemetry_payload(const std::string& me, int seq) {
  return me + " telemetry " + std::to_string(seq) + " cpu=" + std::to_string((seq * 37) % 100) + "%";
}

struct Parsed {
  std::string sender;
  std::string kind;
  long seq = -1;
};

bool parse_payload(std::string_view text, Parsed& out) {
  auto sp1 = text.find(' ');
  if (sp1 == std::string_view::npos) return false;
  auto sp2 = text.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  auto sp3 = text.find(' ', sp2 + 1);
  if (sp3 == std::string_view::npos) return false;
  out.sender = std::string(text.substr(0, sp1));
  out.kind = std::string(text.substr(sp1 + 1, sp2 - sp1 - 1));
  const std::string num(text.substr(sp2 + 1, sp3 - sp2 - 1));
  char* end = nullptr;
  out.seq = std::strtol(num.c_str(), &end, 10);
  return end != num.c_str() && *end == '\0' && out.seq >= 0;
}

// --- one member -------------------------------------------------------------------------

struct SenderTally {
  std::uint64_t count = 0;
  long first = -1;
  long last = -1;
  std::uint64_t out_of_order = 0;  ///< deliveries whose sequence was not above the previous
  std::uint64_t damaged = 0;       ///< payload did not parse, or claims another sender/kind
};

class Tally {
 public:
  explicit Tally(std::string kind) : kind_(std::move(kind)) {}

  void deliver(const tmc::Message& m) {
    Parsed p;
    const bool ok = parse_payload(m.text(), p);
    std::lock_guard<std::mutex> lk(mu_);
    SenderTally& t = by_sender_[m.sender];
    if (!ok || p.sender != m.sender || p.kind != kind_) {
      ++t.damaged;
      return;
    }
    if (t.count > 0 && p.seq <= t.last) ++t.out_of_order;
    if (t.count == 0) t.first = p.seq;
    t.last = p.seq;
    ++t.count;
  }
  std::uint64_t total() const {
    std::lock_guard<std::mutex> lk(mu_);
    std::uint64_t n = 0;
    for (const auto& [s, t] : by_sender_) n += t.count;
    return n;
  }
  std::map<std::string, SenderTally> snapshot() const {
    std::lock_guard<std::mutex> lk(mu_);
    return by_sender_;
  }

 private:
  std::string kind_;
  mutable std::mutex mu_;
  std::map<std::string, SenderTally> by_sender_;
};

std::string counters_line(const tmc::ChannelStats& s) {
  std::ostringstream o;
  o << "sent " << s.messages_sent << " msgs (" << s.datagrams_sent << " datagrams, " << s.datagram_bytes_sent
    << " B on the wire), received " << s.datagrams_received << " datagrams (" << s.own_datagrams
    << " of them its own, looped back and ignored), delivered " << s.messages_delivered
    << " msgs (" << s.bytes_delivered << " B payload)";
  std::string drops;
  for (std::size_t i = 0; i < tmc::kDropReasonCount; ++i) {
    if (s.drops[i] == 0) continue;
    drops += (drops.empty() ? "" : ", ") + std::string(tmc::drop_reason_name(static_cast<tmc::DropReason>(i))) + " " +
             std::to_string(s.drops[i]);
  }
  o << "\n    drops: " << (drops.empty() ? "none" : drops);
  if (s.receive_queue_full > 0) o << ", receive queue full " << s.receive_queue_full;
  o << "; loss ratio ";
  if (s.loss_ratio < 0) {
    o << "n/a (no sequence numbers on this channel)";
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", s.loss_ratio);
    o << buf;
  }
  char lat[96];
  std::snprintf(lat, sizeof lat, "; send latency %.1f us", s.send_latency_ns / 1e3);
  o << lat;
  return o.str();
}

void write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

/// Runs in the child. Reports to `out_fd` as text; the last line is "verdict ok" or
/// "verdict FAIL <why>". Waits for one byte on `go_fd` before sending.
int member_main(const Config& cfg, const std::string& me, int out_fd, int go_fd) {
  tmc::Channel orders;
  tmc::Channel telemetry;
  tmc::Status st = tmc::Channel::try_open(orders_manifest(cfg, me), {}, orders);
  if (st) st = tmc::Channel::try_open(telemetry_manifest(cfg, me), {}, telemetry);
  if (!st) {
    write_all(out_fd, "joined\nverdict FAIL could not open a channel: " + st.to_string() + "\n");
    return 1;
  }
  Tally orders_tally("order");
  Tally telemetry_tally("telemetry");
  orders.on_message([&](tmc::Message&& m) { orders_tally.deliver(m); });
  telemetry.on_message([&](tmc::Message&& m) { telemetry_tally.deliver(m); });
  write_all(out_fd, "joined\n");
  char go = 0;
  if (::read(go_fd, &go, 1) != 1) return 1;

  // Interleave the two channels the way an application would, pausing briefly now and
  // then: the demo shows guarantees, not peak rate, and three senders on one host can
  // otherwise overrun each other's socket buffers.
  std::uint64_t send_errors = 0;
  std::string first_error;
  const int rounds = std::max(cfg.orders, cfg.telemetry);
  for (int i = 0; i < rounds; ++i) {
    if (i < cfg.orders) {
      tmc::Status s = orders.send(order_payload(me, i));
      if (!s && send_errors++ == 0) first_error = s.to_string();
    }
    if (i < cfg.telemetry) {
      tmc::Status s = telemetry.send(telemetry_payload(me, i));
      if (!s && send_errors++ == 0) first_error = s.to_string();
    }
    if (i % 20 == 19) std::this_thread::sleep_for(1ms);
  }

  // Wait for the peers' messages: until everything expected arrived, or nothing new came
  // for a second (best effort may lose some; that is allowed and reported).
  const std::uint64_t expect_orders = 2ULL * static_cast<std::uint64_t>(cfg.orders);
  const std::uint64_t expect_telemetry = 2ULL * static_cast<std::uint64_t>(cfg.telemetry);
  std::uint64_t last_total = 0;
  auto last_change = std::chrono::steady_clock::now();
  const auto hard_stop = last_change + 10s;
  for (;;) {
    const std::uint64_t o = orders_tally.total();
    const std::uint64_t t = telemetry_tally.total();
    if (o >= expect_orders && t >= expect_telemetry) break;
    const auto now = std::chrono::steady_clock::now();
    if (o + t != last_total) {
      last_total = o + t;
      last_change = now;
    } else if (now - last_change > 1s) {
      break;
    }
    if (now > hard_stop) break;
    std::this_thread::sleep_for(10ms);
  }
  orders.on_message(nullptr);
  telemetry.on_message(nullptr);
  const tmc::ChannelStats orders_stats = orders.stats();
  const tmc::ChannelStats telemetry_stats = telemetry.stats();
  const std::vector<std::string> members = orders.members();

  std::ostringstream r;
  std::string fail;
  r << me << " (sender id 0x" << std::hex << orders.sender_id() << std::dec << ") knows members:";
  for (const auto& m : members) r << " " << m;
  r << "\n";
  auto report = [&](const char* channel, const Tally& tally, int per_sender, bool ordered) {
    const auto snap = tally.snapshot();
    for (const char* peer : kMembers) {
      if (me == peer) continue;
      auto it = snap.find(peer);
      char line[256];
      if (it == snap.end() || it->second.count == 0) {
        std::snprintf(line, sizeof line, "  %-9s from %-5s: nothing delivered\n", channel, peer);
        fail += std::string(fail.empty() ? "" : "; ") + "no " + channel + " from " + peer;
        r << line;
        continue;
      }
      const SenderTally& t = it->second;
      const long missing = static_cast<long>(per_sender) - static_cast<long>(t.count);
      std::snprintf(line, sizeof line, "  %-9s from %-5s: %4" PRIu64 " of %d messages, seq %ld..%ld, %s, %ld missing%s\n",
                    channel, peer, t.count, per_sender, t.first, t.last,
                    t.out_of_order == 0 ? "in order" : "OUT OF ORDER", missing > 0 ? missing : 0,
                    t.damaged > 0 ? ", DAMAGED payloads" : "");
      r << line;
      if (ordered && t.out_of_order > 0) {
        fail += std::string(fail.empty() ? "" : "; ") + std::to_string(t.out_of_order) + " out-of-order " + channel +
                " from " + peer;
      }
      if (ordered && t.damaged > 0) {
        fail += std::string(fail.empty() ? "" : "; ") + std::to_string(t.damaged) + " damaged " + channel + " from " + peer;
      }
    }
    for (const auto& [sender, t] : snap) {
      bool known = false;
      for (const char* peer : kMembers) known = known || sender == peer;
      if (!known) r << "  " << channel << " from unknown sender " << sender << ": " << t.count << " messages\n";
    }
  };
  report("orders", orders_tally, cfg.orders, true);
  report("telemetry", telemetry_tally, cfg.telemetry, false);
  r << "  counters orders:    " << counters_line(orders_stats) << "\n";
  r << "  counters telemetry: " << counters_line(telemetry_stats) << "\n";
  if (send_errors > 0) {
    r << "  send errors: " << send_errors << " (first: " << first_error << ")\n";
    fail += std::string(fail.empty() ? "" : "; ") + "send errors";
  }
  // The report goes out before close(), so that a close that hangs still shows what was
  // delivered (the parent then reports the member as not finished).
  write_all(out_fd, r.str());
  orders.close();
  telemetry.close();
  write_all(out_fd, fail.empty() ? "verdict ok\n" : "verdict FAIL " + fail + "\n");
  return fail.empty() ? 0 : 1;
}

// --- the parent -------------------------------------------------------------------------

struct Proc {
  std::string name;
  pid_t pid = -1;
  int out_fd = -1;  ///< the member's report (read end)
  int go_fd = -1;   ///< the start signal (write end)
  std::string buf;
  bool eof = false;
};

/// Read from every member until `done(proc)` holds for all, EOF, or the deadline.
template <typename Done>
bool pump(std::vector<Proc>& procs, std::chrono::steady_clock::time_point deadline, Done done) {
  for (;;) {
    bool all = true;
    for (auto& p : procs) all = all && (done(p) || p.eof);
    if (all) return true;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    std::vector<pollfd> fds;
    for (auto& p : procs) fds.push_back({p.eof ? -1 : p.out_fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR) return false;
    for (std::size_t i = 0; i < procs.size(); ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char tmp[4096];
      const ssize_t n = ::read(procs[i].out_fd, tmp, sizeof tmp);
      if (n <= 0) {
        procs[i].eof = true;
      } else {
        procs[i].buf.append(tmp, static_cast<std::size_t>(n));
      }
    }
  }
}

int usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--orders N] [--telemetry N] [--port P] [--reorder PROBABILITY]\n", argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  // A port derived from the PID keeps two demos (say `make demo` while CTest runs it) from
  // hearing each other; the channel id in every header would tell them apart anyway.
  cfg.port = 20000 + static_cast<int>(::getpid() % 20000) * 2;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    const int v = std::atoi(argv[++i]);
    if (a == "--orders" && v > 0) {
      cfg.orders = v;
    } else if (a == "--telemetry" && v > 0) {
      cfg.telemetry = v;
    } else if (a == "--port" && v > 0 && v < 65535) {
      cfg.port = v;
    } else if (a == "--reorder") {
      cfg.reorder = std::atof(argv[i]);
      if (!(cfg.reorder >= 0 && cfg.reorder < 1)) return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }

  std::printf("libTMC demo: the paper's Fig. 3 on this host\n");
  std::printf("three member processes (alice, bob, carol), two channels, UDP multicast on loopback\n\n");

  // The plans, as the compiler makes them for this host (no capability file: defaults).
  const tmc::Registry& registry = tmc::Registry::builtin();
  struct Shown {
    const char* title;
    tmc::Manifest manifest;
  };
  const std::vector<Shown> shown = {
      {"orders — point-to-point ordering + error checking", orders_manifest(cfg, "")},
      {"telemetry — best effort", telemetry_manifest(cfg, "")},
  };
  for (const auto& s : shown) {
    tmc::Plan plan;
    tmc::Status st = tmc::compile(s.manifest, tmc::Capabilities::defaults(), registry, plan);
    std::printf("=== channel %s\n", s.title);
    std::printf("  manifest (YAML):\n%s", indent(tmc::to_yaml(s.manifest), "    ").c_str());
    if (!st) {
      std::printf("  compile failed: %s\n", st.to_string().c_str());
      return 1;
    }
    std::printf("  plan on this host:\n%s\n", indent(plan.to_string(), "    ").c_str());
  }
  // Fig. 3's point: the same manifest on host A, whose NIC checks checksums, needs no
  // software stage for error checking.
  {
    tmc::Capabilities host_a = tmc::Capabilities::defaults();
    host_a.source = "Fig. 3 host A (built in: NIC checksum offload rx+tx)";
    host_a.nic.checksum_rx = true;
    host_a.nic.checksum_tx = true;
    tmc::Plan plan;
    if (tmc::compile(orders_manifest(cfg, ""), host_a, registry, plan)) {
      std::printf("=== for comparison: channel orders on Fig. 3's host A (NIC verifies checksums)\n%s\n",
                  indent(plan.to_string(), "    ").c_str());
    }
  }

  std::printf("running: each member sends %d orders and %d telemetry samples (ports %d and %d)\n", cfg.orders,
              cfg.telemetry, cfg.port, cfg.port + 1);
  std::printf("watch the members' live counters from another terminal: build/tools/tmc stat --watch\n\n");
  std::fflush(stdout);

  std::vector<Proc> procs;
  for (const char* name : kMembers) {
    int out[2];
    int go[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0) {
      std::perror("pipe2");
      return 1;
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("fork");
      return 1;
    }
    if (pid == 0) {
      ::close(out[0]);
      ::close(go[1]);
      for (auto& p : procs) {  // the siblings' pipe ends are not ours
        ::close(p.out_fd);
        ::close(p.go_fd);
      }
      int rc = 1;
      try {
        rc = member_main(cfg, name, out[1], go[0]);
      } catch (const std::exception& e) {
        write_all(out[1], std::string("verdict FAIL exception: ") + e.what() + "\n");
      }
      std::fflush(stdout);
      ::_exit(rc);
    }
    ::close(out[1]);
    ::close(go[0]);
    procs.push_back({name, pid, out[0], go[1], {}, false});
  }

  int rc = 0;
  auto has_line = [](const Proc& p, const char* what) { return p.buf.find(what) != std::string::npos; };
  if (!pump(procs, std::chrono::steady_clock::now() + 15s, [&](const Proc& p) { return has_line(p, "joined\n"); })) {
    std::printf("FAIL: not every member joined within 15 s\n");
    rc = 1;
  }
  // Everyone has joined both groups: release them together so no one sends into a group a
  // peer has not joined yet.
  for (auto& p : procs) {
    (void)::write(p.go_fd, "g", 1);
    ::close(p.go_fd);
  }
  if (!pump(procs, std::chrono::steady_clock::now() + 30s, [&](const Proc& p) { return has_line(p, "verdict "); })) {
    std::printf("FAIL: not every member finished within 30 s\n");
    rc = 1;
  }
  std::vector<std::string> failures;
  for (auto& p : procs) {
    std::string report = p.buf;
    const auto j = report.find("joined\n");
    if (j != std::string::npos) report.erase(j, 7);
    const auto v = report.find("verdict ");
    std::string verdict = v == std::string::npos ? "FAIL did not finish (no verdict)" : report.substr(v + 8);
    if (v != std::string::npos) report.erase(v);
    while (!verdict.empty() && verdict.back() == '\n') verdict.pop_back();
    std::printf("--- %s delivered\n%s", p.name.c_str(), report.c_str());
    if (verdict != "ok") failures.push_back(p.name + ": " + verdict);
  }
  for (auto& p : procs) {
    int status = 0;
    // Every member has reported (or timed out); give each a moment to exit, then stop it.
    for (int tries = 0; tries < 100 && ::waitpid(p.pid, &status, WNOHANG) == 0; ++tries) std::this_thread::sleep_for(20ms);
    if (::waitpid(p.pid, &status, WNOHANG) == 0) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, &status, 0);
      failures.push_back(p.name + ": did not exit");
    } else if (!WIFEXITED(status)) {
      failures.push_back(p.name + ": killed by signal " + std::to_string(WTERMSIG(status)));
    } else if (WEXITSTATUS(status) != 0 && p.buf.find("verdict ok") != std::string::npos) {
      failures.push_back(p.name + ": reported ok but exited with " + std::to_string(WEXITSTATUS(status)));
    }
    ::close(p.out_fd);
  }
  std::printf("\n");
  if (!failures.empty() || rc != 0) {
    std::printf("RESULT: FAIL\n");
    for (const auto& f : failures) std::printf("  %s\n", f.c_str());
    return 1;
  }
  std::printf("RESULT: OK — on \"orders\" every member delivered each peer's messages in order and intact;\n"
              "        \"telemetry\" delivered best effort. Missing messages are allowed on both (neither\n"
              "        channel asked for reliability); ordering and error checking are what \"orders\" promised.\n");
  return 0;
}

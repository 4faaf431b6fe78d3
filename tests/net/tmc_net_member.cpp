// tmc_net_member: one libTMC member for the multi-host (netns) tests.
//
//   tmc_net_member --manifest FILE --name NAME [--send N] [--rate MSGS_PER_S] [--size BYTES]
//                  [--receive SECONDS] [--idle SECONDS] [--log FILE] [--ready FILE]
//                  [--start-after FILE] [--wait-members N] [--outcomes] [--events FILE]
//                  [--caps FILE]
//
// Joins the channel of the manifest file (the interface comes from its 'interface' key),
// then, at once or when --start-after FILE appears:
//   --send N        sends N messages, paced at --rate, each "<name> <seq> <filler>" padded
//                   to --size bytes, so a receiver can rebuild the exact payload;
//   --receive S     delivers for up to S seconds (ending early after --idle seconds without a
//                   delivery once something arrived) and writes one line per delivery to --log:
//                       <sender> <app seq> <wire seq or -> <payload FNV-1a hex> <ok|bad>
//                   where "bad" means the payload is not the one that sender sent for that seq.
// Both may be given (a full-duplex member). --ready FILE is written once the channel is open.
// --wait-members N waits (up to 20 s) until the membership view holds N other members before
// sending. --outcomes asks for each message's delivery outcome (reliable channels) and prints
// how many were met and failed and who was missing; then the exit status is 1 unless every
// outcome was met.
// --caps FILE opens the channel with that capability file (e.g. one declaring
// network.sequencer, so that a tmc-sequencer process orders a group-ordered channel).
// --events FILE writes one line per channel event except delivery_met, in the order they
// came: "<event> sender=<name> epoch=E seq=S count=N members=a,b" (gap_skipped,
// member_failed, sequencer_changed...), and the exit summary counts them by type.
// --consume-us N makes the application slow: the delivery handler sleeps N microseconds per
// message (on the loop thread, so the channel reads nothing meanwhile; flow-control tests).
// --consumer-thread-us N makes it slow the other way: no handler; an application thread
// takes one message at a time with receive() and sleeps N microseconds after each, while
// the loop keeps reading into the receive queue (--receive-queue N sets its size; load-hint
// tests).
// --late-handler-ms N sets the delivery handler N ms after the channel opened (an
// application slow to set it up): what was delivered meanwhile must still reach it first.
// --counters P1,P2 prints every counter whose name starts with one of the prefixes, one
// "<name>: counter <counter> <value>" line each (e.g. flow.,congestion.,shell.).
// The delivery log is written in delivery order, so logs of group-ordered members can be
// compared line by line (tests/net/check_group_logs.py).
// --linger S keeps the channel open S seconds after the last send (repairs go on), for a
// sender that tracks no outcome. --sender-from-payload 1 takes a sender's name from the
// payload (for a channel without membership, whose senders have no names).
// A sender prints "<name>: sending from T ns" when it starts, a receiver "<name>: delivering
// for S s, from T1 to T2 ns" at exit (steady clock, the same in every network namespace)
// and "<name>: delivering cpu U us over M deliveries" (its CPU time from the first delivery
// to the last multiple of 256 deliveries: what delivering costs, start and idle left out).
// On exit it prints its counters and its CPU time ("<name>: cpu user U us, system S us").
// Exit status: 0, or 1 on any error.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <tmc/channel.hpp>

namespace {

using namespace std::chrono_literals;

std::uint32_t fnv1a(const std::uint8_t* p, std::size_t n) {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

/// The payload `sender` sends as message `seq`: text, then a filler that depends on both.
std::string payload_for(const std::string& sender, std::uint64_t seq, std::size_t size) {
  std::string s = sender + " " + std::to_string(seq) + " ";
  std::uint64_t x = seq * 2654435761u + sender.size();
  while (s.size() < size) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    s.push_back(static_cast<char>('a' + (x >> 59) % 26));
  }
  return s;
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

/// The process's user + system CPU time so far, in microseconds (every thread).
long long cpu_us() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  const auto us = [](const timeval& t) {
    return static_cast<long long>(t.tv_sec) * 1000000 + static_cast<long long>(t.tv_usec);
  };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

struct Args {
  std::string manifest;
  std::string name;
  long send = 0;
  double rate = 10000;
  std::size_t size = 64;
  double receive_s = 0;
  double idle_s = 2;
  std::string log;
  std::string ready;
  std::string start_after;
  long wait_members = 0;
  bool outcomes = false;
  std::string events;
  std::string caps;            // --caps: capability file for the channel
  long consume_us = 0;         // --consume-us: a slow application, sleeping per message
  long late_handler_ms = 0;    // --late-handler-ms: the handler set this long after open
  long consumer_us = 0;        // --consumer-thread-us: a slow consumer thread calling receive()
  long receive_queue = 0;      // --receive-queue: OpenOptions::receive_queue_messages
  std::string counter_prefixes;  // --counters: print the counters starting with these
  double linger_s = 0;           // --linger: stay open this long after the last send
  bool sender_from_payload = false;  // --sender-from-payload: the sender's name as its payload says
};

int run(const Args& a) {
  tmc::Manifest m;
  tmc::Diagnostics diag;
  if (!tmc::load_manifest(a.manifest, m, diag)) {
    std::fprintf(stderr, "%s", diag.to_string().c_str());
    return 1;
  }
  if (!a.name.empty()) m.name = a.name;
  if (a.receive_s <= 0) m.duplexity = tmc::Duplexity::send_only;
  if (a.send == 0) m.duplexity = tmc::Duplexity::receive_only;

  tmc::OpenOptions options;
  if (a.receive_queue > 0) options.receive_queue_messages = static_cast<std::uint32_t>(a.receive_queue);
  if (!a.caps.empty()) {
    tmc::Diagnostics cdiag;
    if (!tmc::load_capabilities(a.caps, options.caps, cdiag)) {
      std::fprintf(stderr, "%s", cdiag.to_string().c_str());
      return 1;
    }
  }
  tmc::Channel c;
  if (tmc::Status st = tmc::Channel::try_open(m, options, c); !st) {
    std::fprintf(stderr, "%s: open %s: %s\n", a.name.c_str(), a.manifest.c_str(), st.to_string().c_str());
    return 1;
  }

  std::FILE* log = nullptr;
  if (a.receive_s > 0) {
    log = std::fopen(a.log.empty() ? "/dev/null" : a.log.c_str(), "w");
    if (log == nullptr) {
      std::fprintf(stderr, "%s: cannot write %s\n", a.name.c_str(), a.log.c_str());
      return 1;
    }
  }
  std::mutex mu;
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> last_ns{0};
  std::atomic<std::uint64_t> first_ns{0};
  // The process's CPU time at the first delivery and at every 256th after it, with the
  // deliveries by then: the CPU a delivery costs while delivering (start and idle left out).
  long long cpu_first_us = 0;
  long long cpu_last_us = 0;
  std::uint64_t cpu_last_delivered = 0;
  std::uint64_t bad = 0;
  auto now_ns = [] {
    return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  };
  auto handle = [&](tmc::Message&& msg) {
      const auto p = msg.payload();
      const std::string text(msg.text());
      const auto sp1 = text.find(' ');
      const auto sp2 = sp1 == std::string::npos ? std::string::npos : text.find(' ', sp1 + 1);
      std::uint64_t seq = 0;
      bool ok = false;
      if (sp2 != std::string::npos) {
        seq = std::strtoull(text.substr(sp1 + 1, sp2 - sp1 - 1).c_str(), nullptr, 10);
        const std::string claimed = text.substr(0, sp1);
        ok = (a.sender_from_payload || claimed == msg.sender) && text == payload_for(claimed, seq, p.size());
        if (a.sender_from_payload) msg.sender = claimed;
      }
      std::lock_guard<std::mutex> lk(mu);
      if (!ok) ++bad;
      char wire_seq[24] = "-";
      if (msg.has_seq) std::snprintf(wire_seq, sizeof wire_seq, "%" PRIu64, msg.seq);
      std::fprintf(log, "%s %" PRIu64 " %s %08x %s\n", msg.sender.c_str(), seq, wire_seq, fnv1a(p.data(), p.size()),
                   ok ? "ok" : "bad");
      const std::uint64_t t = now_ns();
      const std::uint64_t before = delivered.fetch_add(1);
      if (before == 0) first_ns.store(t);
      last_ns.store(t);
      if (before % 256 == 0) {
        const long long us = cpu_us();
        if (before == 0) cpu_first_us = us;
        cpu_last_us = us;
        cpu_last_delivered = before;
      }
      // A slow consumer: the handler runs on the loop thread, so while it sleeps the
      // channel reads nothing and its flow stage consumes nothing.
      if (a.consume_us > 0) {
        std::fflush(log);  // a test may count this member's deliveries while it runs
        std::this_thread::sleep_for(std::chrono::microseconds(a.consume_us));
      }
  };
  // A slow consumer thread instead (--consumer-thread-us): the loop keeps reading and
  // queueing; the application takes one message off the receive queue per interval.
  std::atomic<bool> consumer_stop{false};
  std::thread consumer;
  if (log != nullptr && a.consumer_us > 0) {
    consumer = std::thread([&] {
      while (!consumer_stop.load()) {
        std::optional<tmc::Message> msg = c.receive(std::chrono::milliseconds(50));
        if (!msg) continue;
        handle(std::move(*msg));
        std::this_thread::sleep_for(std::chrono::microseconds(a.consumer_us));
      }
    });
  } else if (log != nullptr) {
    if (a.late_handler_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(a.late_handler_ms));
    c.on_message(handle);
  }
  std::FILE* events = nullptr;
  std::mutex events_mu;
  std::vector<std::uint64_t> event_counts(16, 0);
  if (!a.events.empty()) {
    events = std::fopen(a.events.c_str(), "w");
    if (events == nullptr) {
      std::fprintf(stderr, "%s: cannot write %s\n", a.name.c_str(), a.events.c_str());
      return 1;
    }
    c.on_event([&](const tmc::ChannelEvent& e) {
      std::lock_guard<std::mutex> lk(events_mu);
      const auto t = static_cast<std::size_t>(e.type);
      if (t < event_counts.size()) ++event_counts[t];
      if (e.type == tmc::EventType::delivery_met) return;
      std::string who;
      for (const auto& n : e.members) who += (who.empty() ? "" : ",") + n;
      std::fprintf(events, "%s sender=%s epoch=%" PRIu32 " seq=%" PRIu64 " count=%" PRIu64 " members=%s\n",
                   std::string(tmc::event_type_name(e.type)).c_str(), e.sender_name.c_str(), e.epoch, e.seq, e.count,
                   who.empty() ? "-" : who.c_str());
      std::fflush(events);
    });
  }
  if (!a.ready.empty()) {
    std::ofstream(a.ready) << "ready\n";
  }
  if (!a.start_after.empty()) {
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (!file_exists(a.start_after)) {
      if (std::chrono::steady_clock::now() > give_up) {
        std::fprintf(stderr, "%s: %s never appeared\n", a.name.c_str(), a.start_after.c_str());
        return 1;
      }
      std::this_thread::sleep_for(10ms);
    }
  }

  if (a.wait_members > 0) {
    if (tmc::Status st = c.wait_for_members(static_cast<std::size_t>(a.wait_members), 20s); !st) {
      std::fprintf(stderr, "%s: %s\n", a.name.c_str(), st.to_string().c_str());
      return 1;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  if (a.send > 0) {
    std::printf("%s: sending from %" PRIu64 " ns\n", a.name.c_str(),
                static_cast<std::uint64_t>(start.time_since_epoch().count()));
  }
  std::uint64_t send_errors = 0;
  std::deque<std::future<tmc::DeliveryOutcome>> futures;
  std::uint64_t met = 0;
  std::uint64_t failed = 0;
  std::uint64_t other = 0;
  std::uint64_t tracked = 0;
  std::string missing;
  auto take = [&](std::future<tmc::DeliveryOutcome>& f) {
    const tmc::DeliveryOutcome o = f.get();
    if (o.state == tmc::DeliveryOutcome::State::met) {
      ++met;
    } else if (o.state == tmc::DeliveryOutcome::State::failed) {
      ++failed;
      for (const auto& who : o.missing) {
        if (missing.find(who) == std::string::npos) missing += (missing.empty() ? "" : ",") + who;
      }
    } else {
      ++other;
    }
  };
  if (a.send > 0) {
    // Sending on its own thread lets a full-duplex member keep delivering meanwhile (the
    // handler runs on the loop thread either way).
    for (long i = 0; i < a.send; ++i) {
      const std::string p = payload_for(c.name(), static_cast<std::uint64_t>(i), a.size);
      if (a.outcomes) {
        std::future<tmc::DeliveryOutcome> f;
        const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(p.data()), p.size());
        if (!c.send(bytes, tmc::MessageManifest{}, &f)) {
          ++send_errors;
        } else {
          futures.push_back(std::move(f));
          ++tracked;
        }
        // Outcomes settle roughly in send order: take the settled ones off the front, so
        // the application holds only those still open (each names every member that acked).
        while (!futures.empty() && futures.front().wait_for(0s) == std::future_status::ready) {
          take(futures.front());
          futures.pop_front();
        }
      } else if (!c.send(p)) {
        ++send_errors;
      }
      std::this_thread::sleep_until(start + std::chrono::duration<double>((static_cast<double>(i) + 1) / a.rate));
    }
  }
  if (a.linger_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(a.linger_s));
  if (a.receive_s > 0) {
    const auto stop = start + std::chrono::duration<double>(a.receive_s);
    const auto idle_ns = static_cast<std::uint64_t>(a.idle_s * 1e9);
    while (std::chrono::steady_clock::now() < stop) {
      std::this_thread::sleep_for(20ms);
      const std::uint64_t last = last_ns.load();
      if (delivered.load() > 0 && now_ns() > last && now_ns() - last > idle_ns) break;
    }
    if (consumer.joinable()) {
      consumer_stop.store(true);
      consumer.join();
    } else {
      c.on_message(nullptr);
    }
  }
  for (auto& f : futures) {
    if (f.wait_for(60s) != std::future_status::ready) {
      ++other;
      continue;
    }
    take(f);
  }
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (a.outcomes) {
    std::printf("%s: outcomes met %" PRIu64 ", failed %" PRIu64 " (missing: %s), other %" PRIu64
                ", all settled after %.2f s\n",
                a.name.c_str(), met, failed, missing.empty() ? "-" : missing.c_str(), other, elapsed);
  }
  if (log != nullptr && delivered.load() > 0) {
    // From the first delivery to the last: a receiver's own delivery rate (benchmarks).
    // The steady clock is the machine's, shared across network namespaces, so a harness can
    // set these against the sender's start.
    std::printf("%s: delivering for %.6f s, from %" PRIu64 " to %" PRIu64 " ns\n", a.name.c_str(),
                static_cast<double>(last_ns.load() - first_ns.load()) / 1e9, first_ns.load(), last_ns.load());
    std::printf("%s: delivering cpu %lld us over %" PRIu64 " deliveries\n", a.name.c_str(), cpu_last_us - cpu_first_us,
                cpu_last_delivered);
  }
  const tmc::ChannelStats st = c.stats();
  if (log != nullptr && delivered.load() != st.messages_delivered) {
    // Delivered by the channel but never handed to the application (or handed after the
    // handler was removed at the end): the log lacks them.
    std::printf("%s: logged %" PRIu64 " of %" PRIu64 " deliveries\n", a.name.c_str(), delivered.load(),
                st.messages_delivered);
  }
  if (events != nullptr) c.on_event(nullptr);
  c.close();
  if (log != nullptr) {
    std::lock_guard<std::mutex> lk(mu);
    std::fclose(log);
  }
  if (events != nullptr) {
    std::lock_guard<std::mutex> lk(events_mu);
    std::fclose(events);
    std::string summary;
    for (std::size_t t = 0; t < event_counts.size(); ++t) {
      if (event_counts[t] == 0) continue;
      summary += (summary.empty() ? "" : ", ") +
                 std::string(tmc::event_type_name(static_cast<tmc::EventType>(t))) + " " +
                 std::to_string(event_counts[t]);
    }
    std::printf("%s: events: %s\n", c.name().c_str(), summary.empty() ? "none" : summary.c_str());
  }
  std::printf("%s: sent %" PRIu64 " (send errors %" PRIu64 "), datagrams sent %" PRIu64 ", datagrams received %" PRIu64
              ", delivered %" PRIu64
              ", bad payloads %" PRIu64 ", drops.stale %" PRIu64 ", drops.checksum %" PRIu64 ", loss ratio %.4f\n",
              c.name().c_str(), st.messages_sent, send_errors, st.datagrams_sent, st.datagrams_received,
              st.messages_delivered, bad,
              st.drop_count(tmc::DropReason::stale), st.drop_count(tmc::DropReason::checksum), st.loss_ratio);
  std::printf("%s: reliability retransmits %" PRIu64 ", acks received %" PRIu64 ", nacks received %" PRIu64
              ", drops.duplicate %" PRIu64 "\n",
              c.name().c_str(), st.counter("reliability.retransmits"), st.counter("reliability.acks_received"),
              st.counter("reliability.nacks_received"), st.drop_count(tmc::DropReason::duplicate));
  // CPU time of the whole process (every thread), for benchmarks that compare senders.
  if (rusage ru{}; getrusage(RUSAGE_SELF, &ru) == 0) {
    const auto us = [](const timeval& t) {
      return static_cast<long long>(t.tv_sec) * 1000000 + static_cast<long long>(t.tv_usec);
    };
    std::printf("%s: cpu user %lld us, system %lld us\n", c.name().c_str(), us(ru.ru_utime), us(ru.ru_stime));
  }
  // Peak resident memory (VmHWM), for tests that bound what hostile traffic may cost.
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      unsigned long kb = 0;
      if (std::sscanf(line, "VmHWM: %lu kB", &kb) == 1) std::printf("%s: peak rss kB %lu\n", c.name().c_str(), kb);
    }
    std::fclose(f);
  }
  // --counters flow.,shell. prints "<name>: counter <counter> <value>" for each match.
  for (std::size_t from = 0; !a.counter_prefixes.empty() && from <= a.counter_prefixes.size();) {
    std::size_t comma = a.counter_prefixes.find(',', from);
    if (comma == std::string::npos) comma = a.counter_prefixes.size();
    const std::string prefix = a.counter_prefixes.substr(from, comma - from);
    for (const auto& [counter, value] : st.counters) {
      if (!prefix.empty() && counter.rfind(prefix, 0) == 0) {
        std::printf("%s: counter %s %" PRIu64 "\n", c.name().c_str(), counter.c_str(), value);
      }
    }
    from = comma + 1;
  }
  if (a.outcomes && (failed != 0 || other != 0 || met != tracked)) return 1;
  return send_errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "tmc_net_member: %s needs a value\n", k.c_str());
      return 2;
    }
    const char* v = argv[++i];
    if (k == "--manifest") a.manifest = v;
    else if (k == "--name") a.name = v;
    else if (k == "--send") a.send = std::atol(v);
    else if (k == "--rate") a.rate = std::atof(v);
    else if (k == "--size") a.size = static_cast<std::size_t>(std::atol(v));
    else if (k == "--receive") a.receive_s = std::atof(v);
    else if (k == "--idle") a.idle_s = std::atof(v);
    else if (k == "--log") a.log = v;
    else if (k == "--ready") a.ready = v;
    else if (k == "--start-after") a.start_after = v;
    else if (k == "--wait-members") a.wait_members = std::atol(v);
    else if (k == "--outcomes") a.outcomes = std::string(v) == "1" || std::string(v) == "true";
    else if (k == "--events") a.events = v;
    else if (k == "--caps") a.caps = v;
    else if (k == "--consume-us") a.consume_us = std::atol(v);
    else if (k == "--late-handler-ms") a.late_handler_ms = std::atol(v);
    else if (k == "--consumer-thread-us") a.consumer_us = std::atol(v);
    else if (k == "--receive-queue") a.receive_queue = std::atol(v);
    else if (k == "--counters") a.counter_prefixes = v;
    else if (k == "--linger") a.linger_s = std::atof(v);
    else if (k == "--sender-from-payload") a.sender_from_payload = std::string(v) == "1" || std::string(v) == "true";
    else {
      std::fprintf(stderr, "tmc_net_member: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (a.manifest.empty() || (a.send <= 0 && a.receive_s <= 0) || a.rate <= 0 || a.size < 24 || a.size > 1400) {
    std::fprintf(stderr,
                 "usage: tmc_net_member --manifest FILE --name NAME [--send N --rate R --size 24..1400] "
                 "[--receive SECONDS --log FILE] [--idle S] [--ready FILE] [--start-after FILE] [--wait-members N] "
                 "[--outcomes 1] [--events FILE] [--caps FILE]\n");
    return 2;
  }
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tmc_net_member: %s\n", e.what());
    return 1;
  }
}

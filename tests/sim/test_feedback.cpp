// What reliability's feedback costs as the group grows: the compiler's plan for
// 'reliability: true' at n = 3, 8 and 16 members, one sender or every member sending, 0 %
// and 1 % loss, with acks and NACKs unicast to the sender they concern (feedback=unicast,
// the default) and multicast to the group (feedback=multicast, how it was before):
//   - every receiver delivers every message exactly once, intact, either way;
//   - with unicast feedback a member that does not send reads no ack or NACK at all, and a
//     member that sends reads only the feedback about its own messages: fewer feedback
//     datagrams reach it than with multicast whenever anyone else sends too;
//   - a table of feedback datagrams reaching a sender (and a receiver) per data datagram
//     it sent is printed (doctest MESSAGE), before/after side by side.
#include <doctest/doctest.h>

#include <cstdio>
#include <sstream>

#include "sim_util.hpp"
#include "tmc/manifest.hpp"
#include "tmc/wire.hpp"

namespace {

using simtest::Check;
using tmc::sim::Network;

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint32_t kCount = 300;  // messages per sender

tmc::Plan compiled(std::size_t n, std::size_t self, bool unicast) {
  std::string yaml = "id: sim-feedback\nreliability: true\nmembers: [";
  for (std::size_t i = 0; i < n; ++i) yaml += (i ? ", m" : "m") + std::to_string(i);
  yaml += "]\n";
  tmc::Plan p = simtest::compile_plan(yaml, "m" + std::to_string(self));
  bool found = false;
  for (auto& st : p.stages) {
    if (st.kind != "reliability.arq") continue;
    st.params["feedback"] = unicast ? "unicast" : "multicast";
    found = true;
  }
  REQUIRE(found);
  return p;
}

[[nodiscard]] tmc::wire::Kind kind_of(std::span<const std::uint8_t> bytes) {
  return bytes.size() > 3 ? static_cast<tmc::wire::Kind>(bytes[3]) : tmc::wire::Kind::control;
}

struct Cost {
  std::uint64_t data_sent = 0;        // data datagrams member 0 sent the first time
  std::uint64_t feedback_at_sender = 0;  // acks + NACKs reaching member 0
  std::uint64_t feedback_at_receiver = 0;  // acks + NACKs reaching member n - 1
  std::uint64_t arrivals = 0;          // every datagram copy reaching any member
  std::uint64_t retransmits = 0;       // all members
};

Cost run(std::size_t n, bool all_send, double loss, bool unicast, std::uint64_t seed, Check& c,
         const std::function<void(Network&)>& attach) {
  tmc::sim::LinkParams link = tmc::sim::LinkParams::clean(100'000);
  link.jitter_ns = 50'000;
  link.loss = loss;
  Network net(simtest::config(seed, link));
  attach(net);
  for (std::size_t i = 0; i < n; ++i) net.add_member(compiled(n, i, unicast));
  Cost cost;
  net.set_arrival_tap([&](std::size_t to, std::span<const std::uint8_t> bytes) {
    ++cost.arrivals;
    const tmc::wire::Kind k = kind_of(bytes);
    if (k != tmc::wire::Kind::ack && k != tmc::wire::Kind::nack) return;
    if (to == 0) ++cost.feedback_at_sender;
    if (to == n - 1) ++cost.feedback_at_receiver;
  });
  const std::vector<std::size_t> senders = all_send ? simtest::all(net) : std::vector<std::size_t>{0};
  simtest::schedule_burst(net, senders, kCount, 300 * kMs, 200'000, seed);
  c.expect(net.run_until(3'000 * kMs), "event limit hit");
  // Exactly once at every member, from every sender.
  for (std::size_t r = 0; r < n; ++r) {
    simtest::check_intact(net, r, seed, c);
    simtest::check_no_duplicates(net, r, seed, c);
    const std::size_t expect = all_send ? kCount * (n - 1) : (r == 0 ? 0 : kCount);
    c.expect(net.deliveries(r).size() == expect, "n=", n, " member ", r, " delivered ", net.deliveries(r).size(),
             " messages, want ", expect);
    cost.retransmits += net.counters(r).get("reliability.retransmits");
  }
  cost.data_sent = net.counters(0).get("reliability.sent");
  return cost;
}

std::string ratio(std::uint64_t a, std::uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b));
  return buf;
}

}  // namespace

TEST_CASE("sim: reliability.arq feedback unicast to the sender it concerns at n = 3 8 16") {
  std::ostringstream table;
  table << "feedback datagrams reaching a member per data datagram member 0 sent (multicast -> unicast)\n"
        << "   n  senders  loss   at sender        at a receiver    all arrivals/datagram   retransmits\n";
  bool first_seed = true;
  simtest::for_each_seed(2, [&](std::uint64_t seed, Check& c, auto& attach) {
    for (std::size_t n : {3u, 8u, 16u}) {
      for (bool all_send : {false, true}) {
        for (double loss : {0.0, 0.01}) {
          const Cost before = run(n, all_send, loss, false, seed, c, attach);
          const Cost after = run(n, all_send, loss, true, seed, c, attach);
          if (all_send) {
            // Member 0 also receives: with multicast it reads every member's acks of every
            // other sender; with unicast only those about its own messages.
            c.expect(after.feedback_at_sender < before.feedback_at_sender, "n=", n,
                     ": unicast feedback did not reduce what reaches a sender (", after.feedback_at_sender, " vs ",
                     before.feedback_at_sender, ")");
          } else {
            c.expect(after.feedback_at_receiver == 0, "n=", n, ": a receiver that sends nothing read ",
                     after.feedback_at_receiver, " feedback datagrams");
            c.expect(before.feedback_at_receiver > 0, "n=", n, ": multicast feedback never reached a receiver");
          }
          c.expect(after.arrivals < before.arrivals, "n=", n, ": unicast feedback did not reduce arrivals");
          if (!first_seed) continue;
          char row[200];
          const std::uint64_t sent_all = before.data_sent * (all_send ? n : 1);
          const std::uint64_t sent_all_after = after.data_sent * (all_send ? n : 1);
          std::snprintf(row, sizeof row, "%4zu  %7s  %3.0f%%   %5s -> %-5s   %5s -> %-5s   %6s -> %-6s        %llu -> %llu\n",
                        n, all_send ? "all" : "one", loss * 100, ratio(before.feedback_at_sender, before.data_sent).c_str(),
                        ratio(after.feedback_at_sender, after.data_sent).c_str(),
                        ratio(before.feedback_at_receiver, before.data_sent).c_str(),
                        ratio(after.feedback_at_receiver, after.data_sent).c_str(),
                        ratio(before.arrivals, sent_all).c_str(), ratio(after.arrivals, sent_all_after).c_str(),
                        static_cast<unsigned long long>(before.retransmits),
                        static_cast<unsigned long long>(after.retransmits));
          table << row;
        }
      }
    }
    first_seed = false;
  });
  MESSAGE(table.str());
}

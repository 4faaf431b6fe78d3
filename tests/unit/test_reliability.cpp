// reliability.arq: acks, retransmission, NACK repair and suppression, outcomes, windows,
// late joiners, ack sets (all, named, fraction, k), send-only members, parameters.
// Each test drives real pipelines holding only the stage and fills their Group views by
// hand (the membership stage is absent here), moving datagrams between them explicitly.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <set>

#include "../support/recording_sink.hpp"
#include "primitives/reliability/ack_format.hpp"
#include "primitives/reliability/arq_config.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

constexpr std::uint64_t kMs = 1'000'000;
constexpr std::uint64_t kUs = 1'000;
using KV = std::initializer_list<std::pair<const std::string, std::string>>;

struct Node {
  Node(std::string name, std::uint32_t sender, KV params, bool receives = true, std::uint32_t epoch = 1000,
       bool ordered = false)
      : pool(2048, 64, 1 << 14) {
    // ordered: strict ordering above (ordering.fifo over ordering.seq), as the compiler plans it.
    Plan plan = ordered ? make_plan({stage("ordering.fifo", {{"mode", "strict"}, {"hold_us", "10000000"}}),
                                     stage("ordering.seq"), stage("reliability.arq", params)})
                        : make_plan({stage("reliability.arq", params)});
    plan.member = std::move(name);
    if (!receives) plan.duplexity = Duplexity::send_only;
    ep = std::make_unique<Endpoint>(pool, plan, make_env(sender, epoch, sender * 7919ull));
    (*ep)->start(0);
  }
  PacketPool pool;
  std::unique_ptr<Endpoint> ep;

  Pipeline& pl() { return **ep; }
  RecordingSink& sink() { return ep->sink; }
  std::uint64_t c(const char* name) { return pl().counters().get(name); }
  void send(std::string_view payload, std::uint64_t now_ns, std::uint64_t token, std::uint16_t flags = 0) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(static_cast<std::uint32_t>(payload.size()));
    std::memcpy(p->payload(), payload.data(), payload.size());
    p->flags = flags;
    p->token = token;
    pl().send(p, now_ns);
  }
  void hear(const std::string& name, std::uint32_t sender, std::uint32_t epoch = 1000, bool receives = true) {
    pl().group().heard(name, sender, epoch, receives, 0);
  }
  void tick(std::uint64_t now_ns) {
    if (pl().next_deadline_ns() != 0 && pl().next_deadline_ns() <= now_ns) pl().tick(now_ns);
  }
  std::vector<std::string> got() const { return ep->sink.payloads(); }
};

// What a transmitted datagram is, decoded.
struct Seen {
  wire::Kind kind = wire::Kind::data;
  std::uint64_t rseq = 0;
  std::uint64_t trail = 0;
  detail::AckBody ack;
  detail::NackBody nack;
  std::optional<detail::AckBody> nack_position;  // the position a large group's NACK carries
};
Seen inspect(PacketPool& pool, const Packet& sent) {
  Packet* r = as_received(pool, sent);
  REQUIRE(wire::decode(*r) == wire::DecodeError::none);
  Seen s{};
  s.kind = r->kind;
  std::uint8_t len = 0;
  if (const auto* b = r->ext(wire::Ext::rel, &len)) {
    const auto rel = detail::decode_rel_body(b, len);
    REQUIRE(rel.has_value());
    s.rseq = rel->rseq;
    s.trail = rel->trail;
  }
  if (const auto* b = r->ext(wire::Ext::ack, &len)) {
    if (r->kind == wire::Kind::ack) s.ack = detail::decode_ack(b, len).value();
    if (r->kind == wire::Kind::nack) {
      s.nack = detail::decode_nack(b, len).value();
      s.nack_position = detail::decode_nack_position(b, len);
    }
  }
  r->release();
  return s;
}

// Multicast everything `from` transmitted to `to` (each copy passes `keep`, if given).
using Keep = std::function<bool(std::size_t dest, const Seen&)>;
std::size_t multicast(Node& from, std::vector<Node*> to, std::uint64_t now_ns, const Keep& keep = {}) {
  std::vector<Packet*> batch;
  batch.swap(from.sink().transmitted);
  for (Packet* p : batch) {
    const Seen s = inspect(from.pool, *p);
    for (std::size_t i = 0; i < to.size(); ++i) {
      if (keep && !keep(i, s)) continue;
      to[i]->pl().receive(as_received(to[i]->pool, *p), now_ns);
    }
    p->release();
  }
  return batch.size();
}

std::vector<Seen> transmitted(Node& n) {
  std::vector<Seen> v;
  for (Packet* p : n.sink().transmitted) v.push_back(inspect(n.pool, *p));
  return v;
}

// Forget what a node transmitted (lost on the wire), keeping its deliveries and events.
void lose_tx(Node& n) {
  for (Packet* p : n.sink().transmitted) p->release();
  n.sink().transmitted.clear();
}

std::size_t events(Node& n, EventType t) { return n.sink().count_events(t); }

const Event* event_for(Node& n, EventType t, std::uint64_t token) {
  for (const Event& e : n.sink().events) {
    if (e.type == t && e.token == token) return &e;
  }
  return nullptr;
}

// A forged reliable data datagram from (sender, epoch) claiming sequence `rseq` and
// trailing edge `trail`, ready for Pipeline::receive.
Packet* forged_rel(PacketPool& pool, std::uint32_t sender, std::uint32_t epoch, std::uint64_t rseq,
                   std::uint64_t trail, std::string_view payload = "forged") {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(payload.size()));
  std::memcpy(s->payload(), payload.data(), payload.size());
  s->kind = wire::Kind::data;
  s->flags = wire::kFlagReliable;
  s->channel = wire::channel_hash("test", 4);
  s->sender = sender;
  s->epoch = epoch;
  std::uint8_t* body = s->push_ext(wire::Ext::rel, detail::kRelBodyBytes);
  REQUIRE(body != nullptr);
  detail::encode_rel(body, detail::RelBody{rseq, trail});
  s->seal();
  Packet* r = as_received(pool, *s);
  s->release();
  return r;
}

// A sender "a" (slot 0) that knows receivers "b" (slot 1) and "c" (slot 2).
struct Trio {
  explicit Trio(KV params = {}) : a("a", 100, params), b("b", 200, params), c("c", 300, params) {
    a.hear("b", 200);
    a.hear("c", 300);
    b.hear("a", 100);
    b.hear("c", 300);
    c.hear("a", 100);
    c.hear("b", 200);
  }
  Node a, b, c;
  // Run the acks/NACKs of b and c back to everyone.
  void feedback(std::uint64_t now_ns) {
    multicast(b, {&a, &c}, now_ns);
    multicast(c, {&a, &b}, now_ns);
  }
};

}  // namespace

TEST_CASE("reliability.arq: acks from every receiver meet each message once, naming who acked") {
  Trio t;
  for (int i = 1; i <= 3; ++i) t.a.send("m" + std::to_string(i), 0, 10 + i);
  const auto tx = transmitted(t.a);
  REQUIRE(tx.size() == 3);
  CHECK(tx[0].rseq == 1);
  CHECK(tx[2].rseq == 3);
  CHECK(tx[0].trail == 1);
  CHECK(t.a.pl().held_packets() == 3);
  multicast(t.a, {&t.b, &t.c}, 100 * kUs);
  CHECK(t.b.got() == std::vector<std::string>{"m1", "m2", "m3"});
  CHECK(t.c.got() == std::vector<std::string>{"m1", "m2", "m3"});
  // Acks are coalesced: none yet, then one each after ack_delay_us.
  CHECK(t.b.sink().transmitted.empty());
  t.b.tick(100 * kUs + 500 * kUs);
  t.c.tick(100 * kUs + 500 * kUs);
  REQUIRE(t.b.sink().transmitted.size() == 1);
  const Seen ack = transmitted(t.b)[0];
  CHECK(ack.kind == wire::Kind::ack);
  CHECK(ack.ack.target_sender == 100);
  CHECK(ack.ack.cumulative == 3);
  t.feedback(700 * kUs);
  CHECK(events(t.a, EventType::delivery_met) == 3);
  CHECK(events(t.a, EventType::delivery_failed) == 0);
  const Event* e = event_for(t.a, EventType::delivery_met, 12);
  REQUIRE(e != nullptr);
  CHECK(e->seq == 2);
  CHECK(e->members == tmc::MemberSet::of({1, 2}));
  CHECK(e->stage == "reliability.arq");
  CHECK(t.a.pl().held_packets() == 0);
  CHECK(t.a.c("reliability.met") == 3);
  CHECK(t.a.c("reliability.acks_received") == 2);
  CHECK(t.a.c("reliability.rtt_samples") == 2);
  // The receivers' acks for another sender are consumed, never delivered.
  CHECK(t.b.got().size() == 3);
  // Nothing left to do: the sender's timer may fire once more but sends nothing.
  t.a.tick(1000 * kMs);
  CHECK(t.a.sink().transmitted.empty());
  CHECK(t.a.pl().next_deadline_ns() == 0);
}

TEST_CASE("reliability.arq: ack_every sends an ack at once after that many new packets") {
  Trio t({{"ack_every", "2"}});
  for (int i = 0; i < 4; ++i) t.a.send("x", 0, 0);
  multicast(t.a, {&t.b, &t.c}, 0);
  CHECK(t.b.c("reliability.acks_sent") == 2);
  t.feedback(0);
  CHECK(events(t.a, EventType::delivery_met) == 4);
}

TEST_CASE("reliability.arq: duplicates are delivered once and re-acknowledged (lost acks)") {
  Trio t;
  t.a.send("m1", 0, 1);
  REQUIRE(t.a.sink().transmitted.size() == 1);
  multicast(t.a, {&t.b, &t.c}, 0);
  t.b.tick(kMs);
  t.c.tick(kMs);
  // b's ack is lost; c's arrives.
  lose_tx(t.b);
  multicast(t.c, {&t.a, &t.b}, kMs);
  CHECK(events(t.a, EventType::delivery_met) == 0);
  // The RTO retransmits to everyone; b and c drop the copy as a duplicate and ack again.
  t.a.tick(60 * kMs);
  REQUIRE(t.a.sink().transmitted.size() == 1);
  CHECK(t.a.c("reliability.retransmits") == 1);
  multicast(t.a, {&t.b, &t.c}, 60 * kMs);
  CHECK(t.b.got().size() == 1);
  CHECK(t.b.c("reliability.duplicates") == 1);
  CHECK(t.b.pl().counters().get("drops.duplicate") == 1);
  t.b.tick(61 * kMs);
  t.c.tick(61 * kMs);
  t.feedback(61 * kMs);
  CHECK(events(t.a, EventType::delivery_met) == 1);
  // Karn's rule: c's first ack gave a sample; the acks after the retransmission do not.
  CHECK(t.a.c("reliability.rtt_samples") == 1);
}

// A hole repaired late makes a receiver's cumulative ack jump over messages it received
// long before (its SACK bitmap reaches only 64 past the cumulative point, so no earlier
// ack could show them): their round trip is unknown, and none of them gives a sample.
TEST_CASE("reliability.arq: no RTT sample from messages beyond the last ack's SACK reach") {
  Trio t({{"nack_delay_us", "1000"}});
  for (int i = 1; i <= 100; ++i) t.a.send("m" + std::to_string(i), 0, i);
  // The second datagram is lost; every other one arrives at once.
  multicast(t.a, {&t.b, &t.c}, 0, [](std::size_t, const Seen& s) { return s.rseq != 2; });
  for (std::uint64_t ms = 1; ms <= 20; ++ms) {  // acks (cumulative 1, SACK 3..66), NACKs for 2
    t.b.tick(ms * kMs);
    t.c.tick(ms * kMs);
    t.feedback(ms * kMs);
  }
  CHECK(t.a.c("reliability.nacks_received") >= 1);
  CHECK(t.a.c("reliability.retransmits") >= 1);  // 2, at the NACKs
  const std::uint64_t samples = t.a.c("reliability.rtt_samples");
  CHECK(samples >= 2);  // from 66, the newest those acks show
  // The repair arrives 300 ms later: the acks now cover 2..100 at once.
  multicast(t.a, {&t.b, &t.c}, 300 * kMs);
  t.b.tick(301 * kMs);
  t.c.tick(301 * kMs);
  t.feedback(301 * kMs);
  CHECK(events(t.a, EventType::delivery_met) == 100);
  // 2 was retransmitted (Karn); 67..100 arrived at 0 but are first acked now: no sample
  // (it would have said 301 ms).
  CHECK(t.a.c("reliability.rtt_samples") == samples);
}

TEST_CASE("reliability.arq: the application acknowledges on a member's behalf; its replies settle the message") {
  Trio t;
  t.a.send("m1", 0, 7);
  t.a.send("m2", 0, 8);
  multicast(t.a, {&t.b, &t.c}, 0);
  // b's and c's replies to m1 arrive (on this channel or any other) before their acks.
  CHECK(t.a.pl().app_ack(7, 200, 2 * kMs));
  CHECK(events(t.a, EventType::delivery_met) == 0);  // c has not answered yet
  CHECK(t.a.pl().app_ack(7, 300, 3 * kMs));
  const Event* e = event_for(t.a, EventType::delivery_met, 7);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of({1, 2}));
  CHECK(t.a.c("reliability.rtt_samples") == 2);
  CHECK(t.a.c("reliability.acks_received") == 0);
  CHECK(t.a.pl().held_packets() == 1);  // m2 waits for its acks
  // Settled, never sent, or from a member outside the view: nothing to acknowledge.
  CHECK_FALSE(t.a.pl().app_ack(7, 200, 3 * kMs));
  CHECK_FALSE(t.a.pl().app_ack(99, 200, 3 * kMs));
  CHECK_FALSE(t.a.pl().app_ack(8, 12345, 3 * kMs));
  // The receivers' own acks still count: m2 is met by them, m1 reported once only.
  t.b.tick(kMs);
  t.c.tick(kMs);
  t.feedback(4 * kMs);
  CHECK(events(t.a, EventType::delivery_met) == 2);
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq acks=application: no ack datagrams; a request whose reply is lost goes again and is "
          "delivered again") {
  Trio t({{"acks", "application"}});
  t.a.send("req", 0, 1);
  multicast(t.a, {&t.b, &t.c}, 0);
  CHECK(t.b.got() == std::vector<std::string>{"req"});
  // Receivers never ack in this mode, however long they wait.
  t.b.tick(100 * kMs);
  t.c.tick(100 * kMs);
  CHECK(t.b.sink().transmitted.empty());
  CHECK(t.c.sink().transmitted.empty());
  // b's reply arrives; c's is lost: the request goes again after the timeout.
  CHECK(t.a.pl().app_ack(1, 200, kMs));
  t.a.tick(60 * kMs);
  REQUIRE(t.a.sink().transmitted.size() == 1);
  CHECK(t.a.c("reliability.retransmits") == 1);
  multicast(t.a, {&t.b, &t.c}, 60 * kMs);
  // Both had it: each passes it up again (so c answers again) and sends no ack.
  CHECK(t.c.got() == std::vector<std::string>{"req", "req"});
  CHECK(t.b.got() == std::vector<std::string>{"req", "req"});
  CHECK(t.c.c("reliability.duplicates") == 1);
  CHECK(t.c.c("reliability.acks_sent") == 0);
  CHECK(t.c.sink().transmitted.empty());
  CHECK(t.a.pl().app_ack(1, 300, 61 * kMs));
  CHECK(events(t.a, EventType::delivery_met) == 1);
  CHECK(t.a.pl().held_packets() == 0);
  // Gaps are still NACKed: m3 arrives at b without m2.
  t.a.send("m2", 62 * kMs, 2);
  lose_tx(t.a);
  t.a.send("m3", 62 * kMs, 3);
  multicast(t.a, {&t.b}, 62 * kMs);
  t.b.tick(70 * kMs);
  const auto fb = transmitted(t.b);
  REQUIRE(fb.size() == 1);
  CHECK(fb[0].kind == wire::Kind::nack);
  CHECK(fb[0].nack.first == 2);
}

TEST_CASE("reliability.arq: a gap is NACKed after a random delay and repaired by one retransmission") {
  Trio t;
  for (int i = 1; i <= 3; ++i) t.a.send("m" + std::to_string(i), 0, i);
  // b loses rseq 2; c gets everything.
  multicast(t.a, {&t.b, &t.c}, 0, [](std::size_t dest, const Seen& s) { return !(dest == 0 && s.rseq == 2); });
  CHECK(t.b.got() == std::vector<std::string>{"m1", "m3"});  // immediately: ordering is not this stage's job
  const std::uint64_t due = t.b.pl().next_deadline_ns();
  REQUIRE(due != 0);
  CHECK(due <= 1 * kMs);  // the NACK (or ack) timer, within nack_delay_us
  t.b.tick(kMs);
  std::vector<Seen> out = transmitted(t.b);
  const auto nack = std::find_if(out.begin(), out.end(), [](const Seen& s) { return s.kind == wire::Kind::nack; });
  REQUIRE(nack != out.end());
  CHECK(nack->nack.target_sender == 100);
  CHECK(nack->nack.first == 2);
  CHECK(nack->nack.count == 1);
  CHECK(!nack->nack_position.has_value());  // small groups: the NACK alone, 20 bytes
  t.feedback(kMs);
  CHECK(t.a.c("reliability.nacks_received") == 1);
  CHECK(t.a.c("reliability.retransmits") == 1);
  multicast(t.a, {&t.b, &t.c}, 2 * kMs);
  CHECK(t.b.got() == std::vector<std::string>{"m1", "m3", "m2"});
  CHECK(t.c.c("reliability.duplicates") == 1);
  t.b.tick(3 * kMs);
  t.c.tick(3 * kMs);
  t.feedback(3 * kMs);
  CHECK(events(t.a, EventType::delivery_met) == 3);
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: a receiver that hears another's NACK for its gap stays quiet") {
  Trio t({{"nack_delay_us", "1000"}});
  for (int i = 1; i <= 3; ++i) t.a.send("m", 0, i);
  multicast(t.a, {&t.b, &t.c}, 5 * kMs, [](std::size_t, const Seen& s) { return s.rseq != 2; });
  // Whoever's NACK timer fires first asks; the other hears it before its own timer.
  Node& first = t.b.pl().next_deadline_ns() <= t.c.pl().next_deadline_ns() ? t.b : t.c;
  Node& second = &first == &t.b ? t.c : t.b;
  const std::uint64_t t1 = first.pl().next_deadline_ns();
  first.tick(t1);
  REQUIRE(first.c("reliability.nacks_sent") == 1);
  multicast(first, {&t.a, &second}, t1);
  second.tick(7 * kMs);
  CHECK(second.c("reliability.nacks_sent") == 0);
  CHECK(second.c("reliability.nacks_suppressed") == 1);
  CHECK(t.a.c("reliability.retransmits") == 1);
  // A second NACK for the same range within half an RTT causes no second repair.
  CHECK(t.a.c("reliability.nacks_received") == 1);
}

TEST_CASE("reliability.arq: the sender retransmits a range at most once per half RTT however many NACK it") {
  Trio t;
  for (int i = 1; i <= 3; ++i) t.a.send("m", 0, i);
  multicast(t.a, {&t.b, &t.c}, 0, [](std::size_t, const Seen& s) { return s.rseq != 2; });
  t.b.tick(4 * kMs);
  t.c.tick(4 * kMs);
  // Both NACK (neither heard the other) and both NACKs reach the sender at the same time.
  multicast(t.b, {&t.a}, 4 * kMs);
  multicast(t.c, {&t.a}, 4 * kMs);
  CHECK(t.a.c("reliability.nacks_received") == 2);
  CHECK(t.a.c("reliability.retransmits") == 1);
}

TEST_CASE("reliability.arq: in a large group a NACK carries the receiver's position and counts as its ack") {
  // A sender and nine receivers: sparse acks (each receiver acks a stride of datagrams).
  constexpr std::uint32_t kReceivers = 9;
  std::vector<std::pair<std::string, std::uint32_t>> ids{{"a", 100}};
  for (std::uint32_t i = 0; i < kReceivers; ++i) ids.emplace_back("r" + std::to_string(i), 200 + i);
  std::vector<std::unique_ptr<Node>> nodes;
  for (const auto& [name, id] : ids) nodes.push_back(std::make_unique<Node>(name, id, KV{}));
  for (std::size_t x = 0; x < nodes.size(); ++x) {
    for (std::size_t y = 0; y < ids.size(); ++y) {
      if (x != y) nodes[x]->hear(ids[y].first, ids[y].second);
    }
  }
  Node& a = *nodes[0];
  std::vector<Node*> receivers;
  for (std::size_t i = 1; i < nodes.size(); ++i) receivers.push_back(nodes[i].get());
  for (int i = 1; i <= 4; ++i) a.send("m" + std::to_string(i), 0, i);
  // Every receiver misses rseq 2.
  multicast(a, receivers, 0, [](std::size_t, const Seen& s) { return s.rseq != 2; });
  // One whose staggered ack point lies beyond 4 has sent nothing yet: from it the sender
  // hears only its NACK (its tail ack below is lost).
  const auto quiet = std::find_if(receivers.begin(), receivers.end(),
                                  [](Node* r) { return r->sink().transmitted.empty(); });
  REQUIRE(quiet != receivers.end());
  Node& lossy = **quiet;
  // Its NACK goes within the spread, before the tail ack (16 * ack_delay_us).
  const std::uint64_t due = lossy.pl().next_deadline_ns();
  REQUIRE(due != 0);
  REQUIRE(due < 8 * kMs);
  lossy.tick(due);
  const std::vector<Seen> out = transmitted(lossy);
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].kind == wire::Kind::nack);
  CHECK(out[0].nack.first == 2);
  CHECK(out[0].nack.count == 1);
  REQUIRE(out[0].nack_position.has_value());
  CHECK(out[0].nack_position->cumulative == 1);
  CHECK(out[0].nack_position->covers(3));
  CHECK(out[0].nack_position->covers(4));
  multicast(lossy, {&a}, due);
  CHECK(a.c("reliability.nacks_received") == 1);
  CHECK(a.c("reliability.acks_received") == 0);  // a NACK is not an ack packet ...
  CHECK(a.c("reliability.retransmits") == 1);
  lose_tx(a);  // the repair is lost
  // ... but its position is that member's ack: with the others' acks (and NACKs) 1, 3 and
  // 4 are met, although its own tail ack is lost.
  for (Node* r : receivers) r->tick(10 * kMs);
  lose_tx(lossy);
  for (Node* r : receivers) {
    if (r != &lossy) multicast(*r, {&a}, 10 * kMs);
  }
  CHECK(event_for(a, EventType::delivery_met, 1) != nullptr);
  CHECK(event_for(a, EventType::delivery_met, 2) == nullptr);
  CHECK(event_for(a, EventType::delivery_met, 3) != nullptr);
  CHECK(event_for(a, EventType::delivery_met, 4) != nullptr);
}

TEST_CASE("reliability.arq: a member that never acks makes the message fail after max_retries, named") {
  Trio t({{"max_retries", "3"}, {"rto_initial_us", "10000"}});
  t.a.send("m1", 0, 77);
  multicast(t.a, {&t.b}, 0);  // c never hears it
  t.b.tick(kMs);
  multicast(t.b, {&t.a}, kMs);
  std::uint64_t now = kMs;
  int retransmissions = 0;
  for (int i = 0; i < 50 && events(t.a, EventType::delivery_failed) == 0; ++i) {
    now = std::max(now, t.a.pl().next_deadline_ns());
    t.a.tick(now);
    retransmissions += static_cast<int>(t.a.sink().transmitted.size());
    lose_tx(t.a);
  }
  // c never acks anything: its silence counts as evidence of loss once it has lasted
  // rto_max, and from then on every timeout spends the budget. The retransmissions before
  // that (while c might still be acking) are free.
  CHECK(retransmissions >= 3);
  // (The first may be the tail loss probe: c's silence after b's ack.)
  CHECK(t.a.c("reliability.timeouts") + t.a.c("reliability.tail_probes") ==
        static_cast<std::uint64_t>(retransmissions));
  CHECK(t.a.c("reliability.tail_probes") <= 1);
  REQUIRE(events(t.a, EventType::delivery_failed) == 1);
  const Event* e = event_for(t.a, EventType::delivery_failed, 77);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of(2));
  CHECK(t.a.pl().group().names(e->members) == "c");
  CHECK(events(t.a, EventType::delivery_met) == 0);
  CHECK(t.a.c("reliability.failed") == 1);
  CHECK(t.a.pl().held_packets() == 0);
  // Exponential backoff: the RTO (about 3 ms after b's 1 ms RTT sample) doubled three
  // times before the last timeout fails it.
  CHECK(now >= 1 * kMs + 3 * kMs * (1 + 2 + 4 + 8) - kMs);
}

TEST_CASE("reliability.arq: a required member failing in the view fails its messages at once") {
  Trio t;
  t.a.send("m1", 0, 5);
  t.a.send("m2", 0, 6);
  multicast(t.a, {&t.b}, 0);
  t.b.tick(kMs);
  multicast(t.b, {&t.a}, kMs);
  CHECK(events(t.a, EventType::delivery_failed) == 0);
  t.a.pl().group().mark(2, MemberState::failed);
  t.a.tick(2 * kMs);  // any input notices the new view
  t.a.send("m3", 2 * kMs, 7, wire::kFlagUnordered);
  CHECK(events(t.a, EventType::delivery_failed) == 2);
  const Event* e = event_for(t.a, EventType::delivery_failed, 6);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of(2));
  // A message sent in the new view waits only for b.
  multicast(t.a, {&t.b}, 2 * kMs);
  t.b.tick(3 * kMs);
  multicast(t.b, {&t.a}, 3 * kMs);
  CHECK(event_for(t.a, EventType::delivery_met, 7) != nullptr);
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: ack_from waits only for the named members") {
  Trio t({{"ack_from", "b"}});
  t.a.send("m1", 0, 1);
  multicast(t.a, {&t.b}, 0);  // c is lossy: never gets it
  t.b.tick(kMs);
  multicast(t.b, {&t.a}, kMs);
  const Event* e = event_for(t.a, EventType::delivery_met, 1);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of(1));
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: ack_from names a member not heard yet: the message waits for it") {
  Node a("a", 100, {{"ack_from", "b"}});
  Node b("b", 200, {{"ack_from", "b"}});
  a.send("m1", 0, 1);
  CHECK(events(a, EventType::delivery_met) == 0);
  multicast(a, {&b}, 0);
  b.tick(kMs);
  multicast(b, {&a}, kMs);  // a does not know b yet: the ack counts for no one
  CHECK(a.c("reliability.unknown_acker") == 1);
  a.hear("b", 200);
  a.tick(60 * kMs);  // the retransmission is acked again
  multicast(a, {&b}, 60 * kMs);
  b.tick(61 * kMs);
  multicast(b, {&a}, 61 * kMs);
  CHECK(event_for(a, EventType::delivery_met, 1) != nullptr);
}

TEST_CASE("reliability.arq: a member that joins mid-stream must ack only what is sent after it joined") {
  Node a("a", 100, {});
  Node b("b", 200, {});
  Node c("c", 300, {});
  a.hear("b", 200);
  b.hear("a", 100);
  a.send("m1", 0, 1);
  multicast(a, {&b}, 0);
  a.hear("c", 300);  // c joins with m1 in flight
  c.hear("a", 100);
  a.tick(kMs);
  a.send("m2", kMs, 2);
  multicast(a, {&b, &c}, kMs);
  b.tick(2 * kMs);
  multicast(b, {&a}, 2 * kMs);
  const Event* e1 = event_for(a, EventType::delivery_met, 1);
  REQUIRE(e1 != nullptr);
  CHECK(e1->members == tmc::MemberSet::of(1));
  CHECK(event_for(a, EventType::delivery_met, 2) == nullptr);  // waits for c
  c.tick(3 * kMs);
  multicast(c, {&a}, 3 * kMs);
  const Event* e2 = event_for(a, EventType::delivery_met, 2);
  REQUIRE(e2 != nullptr);
  CHECK(e2->members == tmc::MemberSet::of({1, 2}));
  CHECK(a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: a member that stops receiving still owes what was sent before, also when it is back") {
  Trio t;
  t.a.send("m1", 0, 1);
  multicast(t.a, {&t.b}, 0);  // c misses m1
  t.b.tick(kMs);
  multicast(t.b, {&t.a}, kMs);
  CHECK(event_for(t.a, EventType::delivery_met, 1) == nullptr);
  t.a.hear("c", 300, 1000, /*receives=*/false);  // c turns send-only: out of the ack set
  t.a.tick(2 * kMs);
  t.a.send("m2", 2 * kMs, 2);
  std::vector<Packet*> m2;  // held back: reaches b after c is back
  m2.swap(t.a.sink().transmitted);
  t.a.hear("c", 300, 1000, /*receives=*/true);  // back, still owing m1
  t.a.tick(3 * kMs);
  t.a.send("m3", 3 * kMs, 3);
  t.a.sink().transmitted.insert(t.a.sink().transmitted.begin(), m2.begin(), m2.end());
  multicast(t.a, {&t.b}, 3 * kMs);
  t.b.tick(4 * kMs);
  multicast(t.b, {&t.a}, 4 * kMs);
  // m2 was sent while c was out: b's ack meets it, though c (owing m1) holds the lowest
  // position. m1 and m3 wait for c.
  const Event* e2 = event_for(t.a, EventType::delivery_met, 2);
  REQUIRE(e2 != nullptr);
  CHECK(e2->members == tmc::MemberSet::of(1));
  CHECK(event_for(t.a, EventType::delivery_met, 1) == nullptr);
  CHECK(event_for(t.a, EventType::delivery_met, 3) == nullptr);
  CHECK(events(t.a, EventType::delivery_failed) == 0);
  // The timeout sends m1 and m3 again; c acks both.
  t.a.tick(200 * kMs);
  multicast(t.a, {&t.c}, 200 * kMs);
  t.c.tick(201 * kMs);
  multicast(t.c, {&t.a}, 201 * kMs);
  for (const std::uint64_t token : {std::uint64_t{1}, std::uint64_t{3}}) {
    const Event* e = event_for(t.a, EventType::delivery_met, token);
    REQUIRE(e != nullptr);
    CHECK(e->members == tmc::MemberSet::of({1, 2}));
  }
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: ack_fraction and ack_k need that many acks, from anyone") {
  for (const auto& p : {std::pair<std::string, std::string>{"ack_fraction", "0.5"}, {"ack_k", "1"}}) {
    CAPTURE(p.first);
    Trio t({p});
    t.a.send("m1", 0, 1);
    multicast(t.a, {&t.c}, 0);
    t.c.tick(kMs);
    multicast(t.c, {&t.a}, kMs);
    const Event* e = event_for(t.a, EventType::delivery_met, 1);
    REQUIRE(e != nullptr);
    CHECK(e->members == tmc::MemberSet::of(2));
  }
  // ceil(0.6 * 2) = 2: both must ack.
  Trio t({{"ack_fraction", "0.6"}});
  t.a.send("m1", 0, 1);
  multicast(t.a, {&t.b, &t.c}, 0);
  t.c.tick(kMs);
  multicast(t.c, {&t.a}, kMs);
  CHECK(events(t.a, EventType::delivery_met) == 0);
  t.b.tick(kMs);
  multicast(t.b, {&t.a}, kMs);
  CHECK(events(t.a, EventType::delivery_met) == 1);
}

TEST_CASE("reliability.arq: ack_k fails at once when too few members are left to reach k") {
  Trio t({{"ack_k", "2"}});
  t.a.send("m1", 0, 1);
  t.a.pl().group().mark(1, MemberState::left);
  t.a.tick(kMs);
  t.a.send("m2", kMs, 2, 0);
  CHECK(event_for(t.a, EventType::delivery_failed, 1) != nullptr);
}

TEST_CASE("reliability.arq: messages=flagged leaves unflagged packets untouched (zero bytes)") {
  Trio t({{"messages", "flagged"}});
  t.a.send("plain", 0, 1);
  t.a.send("sure", 0, 2, wire::kFlagReliable);
  REQUIRE(t.a.sink().transmitted.size() == 2);
  CHECK(t.a.sink().transmitted[0]->len == wire::kBaseHeaderBytes + 5);
  CHECK(t.a.sink().transmitted[1]->len == wire::kBaseHeaderBytes + 4 + wire::kExtHeaderBytes + 8);
  const auto tx = transmitted(t.a);
  CHECK(tx[0].rseq == 0);
  CHECK(tx[1].rseq == 1);
  multicast(t.a, {&t.b, &t.c}, 0);
  CHECK(t.b.got() == std::vector<std::string>{"plain", "sure"});
  t.b.tick(kMs);
  t.c.tick(kMs);
  t.feedback(kMs);
  CHECK(events(t.a, EventType::delivery_met) == 1);
  CHECK(event_for(t.a, EventType::delivery_met, 2) != nullptr);
}

TEST_CASE("reliability.arq: more than `window` unsettled messages wait in order inside the stage") {
  Trio t({{"window", "2"}});
  for (int i = 1; i <= 5; ++i) t.a.send("m" + std::to_string(i), 0, i);
  CHECK(t.a.sink().transmitted.size() == 2);
  CHECK(t.a.c("reliability.queued") == 3);
  CHECK(t.a.pl().held_packets() == 5);
  for (int round = 0; round < 5 && events(t.a, EventType::delivery_met) < 5; ++round) {
    const std::uint64_t now = (round + 1) * kMs;
    multicast(t.a, {&t.b, &t.c}, now);
    t.b.tick(now + kMs / 2);
    t.c.tick(now + kMs / 2);
    t.feedback(now + kMs / 2);
  }
  CHECK(events(t.a, EventType::delivery_met) == 5);
  CHECK(t.b.got() == std::vector<std::string>{"m1", "m2", "m3", "m4", "m5"});
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: a late joiner starts at the trailing edge, never NACKs older history, "
          "but accepts repairs of it") {
  Trio t;
  for (int i = 1; i <= 4; ++i) t.a.send("m" + std::to_string(i), 0, i);
  multicast(t.a, {&t.b}, 0);  // c is not listening yet
  t.b.tick(kMs);
  multicast(t.b, {&t.a}, kMs);  // 1..4 wait for c still
  t.a.send("m5", 2 * kMs, 5);
  const Seen five = transmitted(t.a)[0];
  CHECK(five.rseq == 5);
  CHECK(five.trail == 1);
  multicast(t.a, {&t.b, &t.c}, 2 * kMs);
  CHECK(t.c.got() == std::vector<std::string>{"m5"});
  t.c.tick(10 * kMs);
  CHECK(t.c.c("reliability.nacks_sent") == 0);  // 1..4 are history for c
  // The RTO repairs them, and c accepts them now.
  t.a.tick(60 * kMs);
  multicast(t.a, {&t.b, &t.c}, 60 * kMs);
  CHECK(t.c.got().size() == 5);
  t.b.tick(61 * kMs);
  t.c.tick(61 * kMs);
  t.feedback(61 * kMs);
  CHECK(events(t.a, EventType::delivery_met) == 5);
}

TEST_CASE("reliability.arq: a receiver skips what the sender has settled (trailing edge moves past a gap)") {
  Trio t({{"ack_from", "b"}});
  t.a.send("m1", 0, 1);
  t.a.send("m2", 0, 2);
  multicast(t.a, {&t.b, &t.c}, 0, [](std::size_t dest, const Seen& s) { return !(dest == 1 && s.rseq == 1); });
  t.b.tick(kMs);
  multicast(t.b, {&t.a}, kMs);
  CHECK(events(t.a, EventType::delivery_met) == 2);
  t.a.send("m3", 2 * kMs, 3);
  CHECK(transmitted(t.a)[0].trail == 3);
  multicast(t.a, {&t.b, &t.c}, 2 * kMs);
  lose_tx(t.c);
  // c's gap at 1 is settled at the sender: it stops asking and acks cumulatively past it.
  t.c.tick(3 * kMs);
  const auto out = transmitted(t.c);
  REQUIRE(out.size() == 1);
  CHECK(out[0].kind == wire::Kind::ack);
  CHECK(out[0].ack.cumulative == 3);
}

TEST_CASE("reliability.arq: a trailing edge claimed beyond the window moves nothing (dropped, counted)") {
  Node a("a", 100, {});
  Node b("b", 200, {});
  a.hear("b", 200);
  b.hear("a", 100);
  a.send("m1", 0, 1);
  multicast(a, {&b}, 0);
  REQUIRE(b.got() == std::vector<std::string>{"m1"});
  // Under a's id and epoch, a datagram whose sequence and trailing edge are 2^20 ahead.
  constexpr std::uint64_t kJump = std::uint64_t{1} << 20;
  b.pl().receive(forged_rel(b.pool, 100, 1000, 1 + kJump, 1 + kJump), kMs);
  CHECK(b.got() == std::vector<std::string>{"m1"});
  CHECK(b.c("reliability.beyond_window") == 1);
  // a's next real message is still fresh at b: delivered, not dropped as a duplicate.
  a.send("m2", 2 * kMs, 2);
  multicast(a, {&b}, 2 * kMs);
  CHECK(b.got() == std::vector<std::string>{"m1", "m2"});
  CHECK(b.c("reliability.duplicates") == 0);
  b.tick(10 * kMs);
  multicast(b, {&a}, 10 * kMs);
  CHECK(events(a, EventType::delivery_met) == 2);
}

TEST_CASE("reliability.arq: a flood of strangers never evicts a member's state; a replay stays a duplicate") {
  Node a("a", 100, {});
  Node b("b", 200, {});
  a.hear("b", 200);
  b.hear("a", 100);
  for (int i = 1; i <= 3; ++i) a.send("m" + std::to_string(i), 0, i);
  std::vector<Packet*> captured;
  for (Packet* p : a.sink().transmitted) captured.push_back(as_received(a.pool, *p));
  multicast(a, {&b}, 0);
  REQUIRE(b.got().size() == 3);
  // Far more unknown sender ids than there are receive slots, each with a fresh stream.
  for (std::uint32_t id = 1; id <= 500; ++id) {
    b.pl().receive(forged_rel(b.pool, 100000 + id, 7, 1, 1, "stranger"), kMs + id * kUs);
  }
  CHECK(b.c("reliability.senders_evicted") > 0);
  const std::size_t before = b.got().size();
  for (Packet* p : captured) {
    b.pl().receive(as_received(b.pool, *p), 2 * kMs);
    p->release();
  }
  CHECK(b.got().size() == before);  // nothing of a's delivered twice
  CHECK(b.c("reliability.duplicates") == 3);
}

TEST_CASE("reliability.arq: an evicted sender's settled edge survives: its replay is not fresh") {
  Node b("b", 200, {});
  // kMaxRxSenders strangers fill every slot; one more evicts the first (the longest silent).
  constexpr std::uint32_t kStates = static_cast<std::uint32_t>(arq::kMaxRxSenders);
  for (std::uint32_t id = 1; id <= kStates + 1; ++id) {
    b.pl().receive(forged_rel(b.pool, 1000 + id, 7, 1, 1, "s" + std::to_string(id)), id * kUs);
  }
  REQUIRE(b.c("reliability.senders_evicted") == 1);
  REQUIRE(b.got().size() == kStates + 1);
  // The first stranger's datagram again: a new state starts at its remembered edge.
  b.pl().receive(forged_rel(b.pool, 1001, 7, 1, 1, "s1"), kMs);
  CHECK(b.got().size() == kStates + 1);
  CHECK(b.c("reliability.duplicates") == 1);
}

TEST_CASE("reliability.arq: a send-only member delivers but never acks or NACKs") {
  Node a("a", 100, {});
  Node s("s", 400, {}, /*receives=*/false);
  a.hear("s", 400, 1000, /*receives=*/false);
  a.send("m1", 0, 1);  // no receivers: met at once, nobody named
  CHECK(event_for(a, EventType::delivery_met, 1) != nullptr);
  a.send("m2", 0, 2);
  a.send("m3", 0, 3);
  multicast(a, {&s}, 0, [](std::size_t, const Seen& x) { return x.rseq != 2; });
  CHECK(s.got().size() == 2);
  s.tick(100 * kMs);
  CHECK(s.sink().transmitted.empty());
}

TEST_CASE("reliability.arq: a restarted sender (new epoch) is a new stream; the old one's stragglers are stale") {
  Node a1("a", 100, {}, true, 1);
  Node b("b", 200, {});
  a1.send("old1", 0, 1);
  a1.send("old2", 0, 2);
  std::vector<Packet*> held;
  held.swap(a1.sink().transmitted);
  b.pl().receive(as_received(b.pool, *held[0]), 0);
  Node a2("a", 100, {}, true, 2);
  a2.send("new1", kMs, 1);
  b.hear("a", 100, 2);
  multicast(a2, {&b}, kMs);
  b.pl().receive(as_received(b.pool, *held[1]), 2 * kMs);  // a straggler of epoch 1
  CHECK(b.got() == std::vector<std::string>{"old1", "new1"});
  CHECK(b.pl().counters().get("drops.stale_epoch") == 1);
  for (Packet* p : held) p->release();
}

TEST_CASE("reliability.arq: on_stop reports every unsettled or queued message as failed") {
  Trio t({{"window", "1"}});
  t.a.send("m1", 0, 1);
  t.a.send("m2", 0, 2);
  t.a.pl().stop(kMs);
  CHECK(events(t.a, EventType::delivery_failed) == 2);
  const Event* e = event_for(t.a, EventType::delivery_failed, 2);
  REQUIRE(e != nullptr);
  CHECK(e->members == tmc::MemberSet::of({1, 2}));
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: RTO follows measured RTT (Jacobson/Karels) within rto_min/rto_max") {
  // (Without the tail loss probe, which would go first: see the next test.)
  Trio t({{"rto_min_us", "2000"}, {"rto_initial_us", "50000"}, {"ack_delay_us", "0"}, {"tail_probe", "false"}});
  // Round trips of 1 ms: the RTO settles near srtt + 4 rttvar, far below 50 ms.
  std::uint64_t now = 0;
  for (int i = 0; i < 20; ++i) {
    t.a.send("x", now, 0);
    multicast(t.a, {&t.b, &t.c}, now + kMs / 2);
    t.feedback(now + kMs);
    now += 2 * kMs;
  }
  CHECK(t.a.c("reliability.rtt_samples") >= 20);
  const std::uint64_t sent_at = now;
  t.a.send("lost", sent_at, 99);
  lose_tx(t.a);
  for (int i = 0; i < 100 && t.a.sink().transmitted.empty(); ++i) {
    now = std::max(now, t.a.pl().next_deadline_ns());
    t.a.tick(now);
  }
  REQUIRE(t.a.sink().transmitted.size() == 1);  // the timeout's retransmission
  CHECK(now - sent_at <= 5 * kMs);
  CHECK(now - sent_at >= 2 * kMs);
}

namespace {

// Trio `t` after 20 messages with 1 ms round trips (every one acked), at time `now`.
std::uint64_t warm_up(Trio& t) {
  std::uint64_t now = 0;
  for (int i = 0; i < 20; ++i) {
    t.a.send("x", now, 0);
    multicast(t.a, {&t.b, &t.c}, now + kMs / 2);
    t.feedback(now + kMs);
    now += 2 * kMs;
  }
  return now;
}

// Send m1..m3 (rseq 21..23) at `t0`; b loses the last two, a tail no later datagram
// reveals; c gets all three; their acks reach the sender 1 ms after t0.
void lose_tail(Trio& t, std::uint64_t t0) {
  for (int i = 1; i <= 3; ++i) t.a.send("m" + std::to_string(i), t0, 100 + static_cast<std::uint64_t>(i));
  multicast(t.a, {&t.b, &t.c}, t0 + kMs / 2, [](std::size_t dest, const Seen& s) { return !(dest == 0 && s.rseq >= 22); });
  t.feedback(t0 + kMs);
  CHECK(t.b.got().back() == "m1");
}

}  // namespace

TEST_CASE("reliability.arq: a lost tail is probed two round trips after the last ack, and NACKed at once") {
  Trio t({{"rto_min_us", "20000"}, {"ack_delay_us", "0"}, {"nack_delay_us", "100"}, {"tail_probe", "true"}});
  const std::uint64_t t0 = warm_up(t);
  lose_tail(t, t0);
  // The probe: about two smoothed RTTs (2 ms) after the last ack progress, far below the
  // 20 ms RTO.
  std::uint64_t probe_at = t0 + kMs;
  for (int i = 0; i < 100 && t.a.sink().transmitted.empty(); ++i) {
    probe_at = std::max(probe_at, t.a.pl().next_deadline_ns());
    t.a.tick(probe_at);
  }
  CHECK(probe_at >= t0 + 2 * kMs);
  CHECK(probe_at <= t0 + 4 * kMs);
  const std::vector<Seen> probe = transmitted(t.a);
  REQUIRE(probe.size() == 1);
  CHECK(probe[0].rseq == 23);  // the newest unsettled message
  CHECK(t.a.c("reliability.tail_probes") == 1);
  CHECK(t.a.c("reliability.timeouts") == 0);
  // b now sees the hole below it and asks for it within nack_delay_us; c re-acks.
  multicast(t.a, {&t.b, &t.c}, probe_at + kMs / 2);
  CHECK(t.c.c("reliability.duplicates") == 1);
  std::uint64_t nack_at = probe_at + kMs / 2;
  for (int i = 0; i < 100 && t.b.c("reliability.nacks_sent") == 0; ++i) {
    nack_at = std::max(nack_at, t.b.pl().next_deadline_ns());
    t.b.tick(nack_at);
  }
  CHECK(t.b.c("reliability.nacks_sent") == 1);
  CHECK(nack_at <= probe_at + kMs / 2 + 100 * kUs);
  t.feedback(nack_at + kMs / 2);
  CHECK(t.a.c("reliability.nacks_received") == 1);
  multicast(t.a, {&t.b, &t.c}, nack_at + kMs);
  t.feedback(nack_at + 2 * kMs);
  CHECK(t.b.got() == std::vector<std::string>(
                         {"x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x",
                          "x", "m1", "m3", "m2"}));
  CHECK(events(t.a, EventType::delivery_met) == 23);
  CHECK(t.a.pl().held_packets() == 0);
  // Settled within a few round trips: the first RTO would have come at t0 + 20 ms.
  CHECK(nack_at + 2 * kMs < t0 + 20 * kMs);
  CHECK(t.a.c("reliability.timeouts") == 0);
  CHECK(t.a.c("reliability.tail_probes") == 1);  // once per tail: none while nothing new was sent
}

TEST_CASE("reliability.arq: tail_probe=false leaves a lost tail to the retransmission timeout") {
  Trio t({{"rto_min_us", "20000"}, {"ack_delay_us", "0"}, {"nack_delay_us", "100"}, {"tail_probe", "false"}});
  const std::uint64_t t0 = warm_up(t);
  lose_tail(t, t0);
  std::uint64_t now = t0 + kMs;
  for (int i = 0; i < 100 && t.a.sink().transmitted.empty(); ++i) {
    now = std::max(now, t.a.pl().next_deadline_ns());
    t.a.tick(now);
  }
  REQUIRE_FALSE(t.a.sink().transmitted.empty());
  CHECK(now >= t0 + 20 * kMs);  // nothing before the RTO
  CHECK(t.a.c("reliability.tail_probes") == 0);
  CHECK(t.a.c("reliability.timeouts") >= 1);
}

TEST_CASE("reliability.arq: ack and NACK bodies round-trip; bad lengths are refused") {
  std::uint8_t buf[24];
  detail::AckBody a{1, 2, 10, 0b101};
  detail::encode_ack(buf, a);
  const auto d = detail::decode_ack(buf, 24);
  REQUIRE(d.has_value());
  CHECK(d->cumulative == 10);
  CHECK(d->covers(10));
  CHECK(!d->covers(11));
  CHECK(d->covers(12));
  CHECK(!d->covers(13));
  CHECK(d->covers(14));
  CHECK(d->highest() == 14);
  CHECK(!detail::decode_ack(buf, 23).has_value());
  detail::NackBody n{3, 4, 99, 7};
  detail::encode_nack(buf, n);
  CHECK(detail::decode_nack(buf, 20)->count == 7);
  CHECK(!detail::decode_nack(buf, 24).has_value());
  CHECK(!detail::decode_nack_position(buf, 20).has_value());  // a NACK without a position
  // A NACK carrying the receiver's position (a large group's): both parts read back.
  std::uint8_t big[detail::kNackAckBodyBytes];
  detail::encode_nack(big, n, detail::AckBody{3, 4, 98, 0b11});
  CHECK(detail::decode_nack(big, detail::kNackAckBodyBytes)->first == 99);
  const auto pos = detail::decode_nack_position(big, detail::kNackAckBodyBytes);
  REQUIRE(pos.has_value());
  CHECK(pos->target_sender == 3);
  CHECK(pos->target_epoch == 4);
  CHECK(pos->cumulative == 98);
  CHECK(pos->covers(101));
  CHECK(!pos->covers(99));
  CHECK(!detail::decode_nack(big, detail::kNackAckBodyBytes - 1).has_value());
  CHECK(!detail::decode_nack_position(big, detail::kNackAckBodyBytes - 1).has_value());
  detail::encode_rel(buf, detail::RelBody{1000, 990});
  CHECK(detail::decode_rel(buf, 8) == 1000u);
  CHECK(detail::decode_rel_body(buf, 8)->trail == 990u);
  wire::put_u64(buf, 0);
  CHECK(!detail::decode_rel_body(buf, 8).has_value());
}

TEST_CASE("reliability.arq: parameters are validated, each error naming the parameter") {
  auto errors_of = [](KV params) {
    const StageInfo* info = Registry::builtin().find("reliability.arq");
    REQUIRE(info != nullptr);
    std::map<std::string, std::string, std::less<>> given(params);
    tmc::Params resolved;
    std::vector<std::string> errors;
    if (!Registry::builtin().resolve_params(*info, given, resolved, errors)) return errors;
    auto st = info->factory();
    st->configure(resolved, make_env(1), errors);
    return errors;
  };
  CHECK(errors_of({}).empty());
  auto has = [](const std::vector<std::string>& v, const char* what) {
    return std::any_of(v.begin(), v.end(), [&](const std::string& s) { return s.find(what) != std::string::npos; });
  };
  CHECK(has(errors_of({{"messages", "some"}}), "messages"));
  CHECK(has(errors_of({{"ack_fraction", "1.5"}}), "ack_fraction"));
  CHECK(has(errors_of({{"window", "0"}}), "window"));
  CHECK(has(errors_of({{"window", "70000"}}), "window"));
  CHECK(has(errors_of({{"ack_k", "2"}, {"ack_from", "x"}}), "at most one"));
  CHECK(has(errors_of({{"rto_min_us", "5000"}, {"rto_max_us", "1000"}}), "rto_min_us"));
  CHECK(has(errors_of({{"ack_every", "0"}}), "ack_every"));
  CHECK(has(errors_of({{"ack_k", "65537"}}), "parameter 'ack_k' must be in 0..65536"));
  CHECK(has(errors_of({{"deliver", "sorted"}}), "must be one of arrival, in_order"));
  CHECK(has(errors_of({{"acks", "application"}, {"deliver", "in_order"}}), "parameter 'acks'"));
  CHECK(errors_of({{"acks", "application"}}).empty());
}

TEST_CASE("reliability.arq deliver=in_order: what arrives above a gap waits for the repair, then goes up in order") {
  Trio t({{"deliver", "in_order"}});
  for (int i = 1; i <= 4; ++i) t.a.send("m" + std::to_string(i), 0, i);
  // b loses rseq 2; c gets everything.
  multicast(t.a, {&t.b, &t.c}, 0, [](std::size_t dest, const Seen& s) { return !(dest == 0 && s.rseq == 2); });
  CHECK(t.b.got() == std::vector<std::string>{"m1"});
  CHECK(t.c.got() == std::vector<std::string>{"m1", "m2", "m3", "m4"});
  CHECK(t.b.c("reliability.held_in_order") == 2);
  CHECK(t.b.pl().held_packets() == 2);
  // Acks do not wait for delivery: b's SACK names 3 and 4 already.
  t.b.tick(kMs);
  t.c.tick(kMs);
  t.feedback(kMs);
  CHECK(t.a.c("reliability.retransmits") == 1);  // 2, on b's NACK
  multicast(t.a, {&t.b, &t.c}, 2 * kMs);
  CHECK(t.b.got() == std::vector<std::string>{"m1", "m2", "m3", "m4"});
  CHECK(t.b.pl().held_packets() == 0);
  CHECK(t.b.c("reliability.delivered") == 4);
  CHECK(t.b.c("reliability.held_released_early") == 0);
}

TEST_CASE("reliability.arq deliver=in_order: a gap the sender gives up on lets what waited behind it go, in order") {
  Trio t({{"deliver", "in_order"}, {"ack_from", "b"}});
  t.a.send("m1", 0, 1);
  t.a.send("m2", 0, 2);
  t.a.send("m3", 0, 3);
  // c never gets 1; b acks everything, so the sender settles 1 without c.
  multicast(t.a, {&t.b, &t.c}, 0, [](std::size_t dest, const Seen& s) { return !(dest == 1 && s.rseq == 1); });
  CHECK(t.c.got().empty());
  CHECK(t.c.pl().held_packets() == 2);
  t.b.tick(kMs);
  multicast(t.b, {&t.a}, kMs);
  lose_tx(t.c);
  t.a.send("m4", 2 * kMs, 4);
  multicast(t.a, {&t.b, &t.c}, 2 * kMs);  // its trailing edge says 1..3 are settled
  CHECK(t.c.got() == std::vector<std::string>{"m2", "m3", "m4"});
  CHECK(t.c.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq deliver=in_order: held packets go up after rto_max_us without the repair") {
  Node a("a", 100, {{"deliver", "in_order"}, {"rto_max_us", "50000"}});
  Node b("b", 200, {{"deliver", "in_order"}, {"rto_max_us", "50000"}});
  a.hear("b", 200);
  b.hear("a", 100);
  for (int i = 1; i <= 3; ++i) a.send("m" + std::to_string(i), 0, i);
  multicast(a, {&b}, 0, [](std::size_t, const Seen& s) { return s.rseq != 1; });
  CHECK(b.got().empty());
  // Every repair is lost: b's NACKs and acks never reach a.
  for (std::uint64_t now = kMs; now <= 60 * kMs; now += kMs) {
    b.tick(now);
    lose_tx(b);
  }
  CHECK(b.got() == std::vector<std::string>{"m2", "m3"});
  CHECK(b.c("reliability.held_released_early") == 2);
  CHECK(b.pl().held_packets() == 0);
  // The late repair is still delivered, once.
  a.tick(60 * kMs);
  multicast(a, {&b}, 61 * kMs);
  CHECK(b.got() == std::vector<std::string>{"m2", "m3", "m1"});
}

TEST_CASE("reliability.arq deliver=in_order: a new incarnation of the sender releases what the old one left held") {
  Node a1("a", 100, {{"deliver", "in_order"}}, true, 1);
  Node b("b", 200, {{"deliver", "in_order"}});
  a1.hear("b", 200);
  a1.send("old1", 0, 1);
  a1.send("old2", 0, 2);
  multicast(a1, {&b}, 0, [](std::size_t, const Seen& s) { return s.rseq != 1; });
  CHECK(b.got().empty());
  Node a2("a", 100, {{"deliver", "in_order"}}, true, 2);
  a2.send("new1", kMs, 1);
  b.hear("a", 100, 2);
  multicast(a2, {&b}, kMs);
  CHECK(b.got() == std::vector<std::string>{"old2", "new1"});
  CHECK(b.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: parameter deliver must be arrival or in_order") {
  const Plan plan = make_plan({stage("reliability.arq", {{"deliver", "sorted"}})});
  PacketPool pool(2048, 4, 64);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  const Status st = Pipeline::build(plan, Registry::builtin(), make_env(1, 1, 1), pool, sink, pl);
  CHECK_FALSE(st.is_ok());
  CHECK(st.message().find("parameter 'deliver' must be one of arrival, in_order, got \"sorted\"") != std::string::npos);
}

// --- forgetting and lifetimes ------------------------------------------------------------

TEST_CASE("reliability.arq: a forgotten message is not repaired, its outcome is forgotten, and receivers hear the edge") {
  Trio t({{"deliver", "in_order"}});
  for (int i = 1; i <= 3; ++i) t.a.send("m" + std::to_string(i), 0, i);
  // m1 is lost on the way to b; c gets everything.
  multicast(t.a, {&t.b, &t.c}, 100 * kUs, [](std::size_t dest, const Seen& s) { return !(dest == 0 && s.rseq == 1); });
  CHECK(t.b.got().empty());  // m2 and m3 wait for m1 (deliver=in_order)
  t.a.pl().forget(1, ForgetScope::message, 200 * kUs);
  const Event* e = event_for(t.a, EventType::delivery_forgotten, 1);
  REQUIRE(e != nullptr);
  CHECK(events(t.a, EventType::delivery_failed) == 0);
  // Forgetting again, or a token already settled, does nothing more.
  t.a.pl().forget(1, ForgetScope::message, 210 * kUs);
  CHECK(t.a.sink().count_events(EventType::delivery_forgotten) == 1);
  // The sender announced its new trailing edge (an ack addressed to itself) ...
  const auto tx = transmitted(t.a);
  REQUIRE(tx.size() == 1);
  CHECK(tx[0].kind == wire::Kind::control);
  CHECK(tx[0].rseq == 0);
  multicast(t.a, {&t.b, &t.c}, 300 * kUs);
  // ... so b passes the held messages up at once, the first marked for ordering above.
  CHECK(t.b.got() == std::vector<std::string>{"m2", "m3"});
  REQUIRE(!t.b.sink().delivered.empty());
  CHECK(t.b.sink().delivered[0]->gap_cause == static_cast<std::uint8_t>(EventCause::released));
  CHECK(t.c.got() == std::vector<std::string>{"m1", "m2", "m3"});
  // b never asks for m1, and a never sends it again.
  for (std::uint64_t now = 400 * kUs; now < 2000 * kMs; now += 5 * kMs) {
    t.a.tick(now);
    t.b.tick(now);
    t.c.tick(now);
    for (const Seen& s : transmitted(t.b)) CHECK(s.kind != wire::Kind::nack);
    for (const Seen& s : transmitted(t.a)) CHECK(s.rseq != 1);
    t.feedback(now);
    multicast(t.a, {&t.b, &t.c}, now);
  }
  CHECK(events(t.a, EventType::delivery_met) == 2);
  CHECK(t.a.pl().held_packets() == 0);
  CHECK(t.b.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: a settled hole after the last released packet marks the next one") {
  Trio t({{"deliver", "in_order"}});
  for (int i = 1; i <= 3; ++i) t.a.send("m" + std::to_string(i), 0, i);
  // b loses m1 and m3, and holds m2 behind the hole at 1.
  multicast(t.a, {&t.b, &t.c}, 100 * kUs,
            [](std::size_t dest, const Seen& s) { return !(dest == 0 && (s.rseq == 1 || s.rseq == 3)); });
  CHECK(t.b.got().empty());
  t.a.pl().forget(3, ForgetScope::and_earlier, 200 * kUs);
  multicast(t.a, {&t.b, &t.c}, 300 * kUs);  // the edge: 1..3 settled
  // m2 goes up marked for the hole before it; the hole at 3 lies after it, so the mark
  // waits for the next packet rather than being spent on m2.
  REQUIRE(t.b.got() == std::vector<std::string>{"m2"});
  CHECK(t.b.sink().delivered[0]->gap_cause == static_cast<std::uint8_t>(EventCause::released));
  t.a.send("m4", 400 * kUs, 4);
  multicast(t.a, {&t.b, &t.c}, 400 * kUs);
  REQUIRE(t.b.got() == std::vector<std::string>{"m2", "m4"});
  CHECK(t.b.sink().delivered[1]->gap_cause == static_cast<std::uint8_t>(EventCause::released));
  CHECK(t.b.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: a settled hole below packets that went up early lets ordering above skip it") {
  const KV params{{"deliver", "in_order"}, {"rto_max_us", "50000"}};
  Node a("a", 100, params, true, 1000, /*ordered=*/true);
  Node b("b", 200, params, true, 1000, /*ordered=*/true);
  a.hear("b", 200);
  b.hear("a", 100);
  for (int i = 1; i <= 3; ++i) a.send("m" + std::to_string(i), 0, i);
  multicast(a, {&b}, 0, [](std::size_t, const Seen& s) { return s.rseq != 1; });
  // b's NACKs and acks are lost: after rto_max_us its hold lets m2 and m3 go up, and
  // ordering above holds them behind m1.
  for (std::uint64_t now = kMs; now <= 60 * kMs; now += kMs) {
    b.tick(now);
    lose_tx(b);
  }
  CHECK(b.c("reliability.held_released_early") == 2);
  CHECK(b.got().empty());
  CHECK(b.pl().held_packets() == 2);
  // The sender forgets m1 and nothing follows: its edge alone must free them.
  a.pl().forget(1, ForgetScope::message, 61 * kMs);
  multicast(a, {&b}, 61 * kMs, [](std::size_t, const Seen& s) { return s.kind == wire::Kind::control; });
  CHECK(b.got() == std::vector<std::string>{"m2", "m3"});
  CHECK(b.pl().held_packets() == 0);
  CHECK(b.c("ordering.gaps_skipped") == 1);
  CHECK(b.c("ordering.timeout_skips") == 0);
}

TEST_CASE("reliability.arq: forget and_earlier settles every older message and none after it") {
  Trio t;
  for (int i = 1; i <= 4; ++i) t.a.send("m" + std::to_string(i), 0, i);
  lose_tx(t.a);
  t.a.pl().forget(3, ForgetScope::and_earlier, 100 * kUs);
  CHECK(events(t.a, EventType::delivery_forgotten) == 3);
  CHECK(event_for(t.a, EventType::delivery_forgotten, 4) == nullptr);
  CHECK(t.a.pl().held_packets() == 1);
}

TEST_CASE("reliability.arq: a coalesced batch is forgotten only with all of its messages") {
  Trio t;
  // One datagram standing for messages 3..5 (pacing.coalesce's batch: token_first..token).
  Packet* p = t.a.pool.alloc();
  REQUIRE(p != nullptr);
  p->reset_for_send(3);
  std::memcpy(p->payload(), "bat", 3);
  p->token = 5;
  p->token_first = 3;
  t.a.pl().send(p, 0);
  lose_tx(t.a);
  // Forgetting one of its messages, even the last, keeps the batch: the others still count.
  for (const std::uint64_t one : {std::uint64_t{3}, std::uint64_t{5}}) t.a.pl().forget(one, ForgetScope::message, 100 * kUs);
  CHECK(events(t.a, EventType::delivery_forgotten) == 0);
  CHECK(t.a.pl().held_packets() == 1);
  // Up to a message before its last, still kept; up to its last, released.
  t.a.pl().forget(4, ForgetScope::and_earlier, 110 * kUs);
  CHECK(t.a.pl().held_packets() == 1);
  t.a.pl().forget(5, ForgetScope::and_earlier, 120 * kUs);
  CHECK(events(t.a, EventType::delivery_forgotten) == 1);
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("reliability.arq: a message whose lifetime runs out is reported expired and never repaired again") {
  Trio t({{"rto_initial_us", "2000"}});
  Packet* p = t.a.pool.alloc();
  REQUIRE(p != nullptr);
  p->reset_for_send(2);
  std::memcpy(p->payload(), "m1", 2);
  p->token = 7;
  p->lifetime_ns = 20 * kMs;
  t.a.pl().send(p, 0);
  lose_tx(t.a);  // lost everywhere
  std::size_t repairs = 0;
  for (std::uint64_t now = kMs; now < 200 * kMs; now += kMs) {
    t.a.tick(now);
    for (const Seen& s : transmitted(t.a)) {
      if (s.rseq == 1) {
        ++repairs;
        CHECK(now < 20 * kMs);  // no repair after the deadline
      }
    }
    lose_tx(t.a);
  }
  CHECK(repairs > 0);  // it was repaired while it was worth something
  const Event* e = event_for(t.a, EventType::delivery_expired, 7);
  REQUIRE(e != nullptr);
  CHECK(events(t.a, EventType::delivery_failed) == 0);
  CHECK(t.a.pl().held_packets() == 0);
}

TEST_CASE("lifetime.deadline: the remaining lifetime travels; receivers drop what has less than the skew left") {
  PacketPool pool(2048, 16, 256);
  Plan plan = make_plan({stage("lifetime.deadline", {{"skew_us", "1000"}})});
  Endpoint tx(pool, plan, make_env(1));
  Endpoint rx(pool, plan, make_env(2));
  auto send = [&](std::uint64_t lifetime_ns, std::uint64_t now) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(3);
    std::memcpy(p->payload(), "abc", 3);
    p->lifetime_ns = lifetime_ns;
    tx->send(p, now);
  };
  send(0, 0);  // no lifetime: no extension
  send(10 * kMs, 0);
  send(800 * kUs, 0);  // less than the skew: dropped on arrival
  REQUIRE(tx.sink.transmitted.size() == 3);
  CHECK(tx.sink.transmitted[0]->len == wire::kBaseHeaderBytes + 3);
  CHECK(tx.sink.transmitted[1]->len == wire::kBaseHeaderBytes + 6 + 3);
  CHECK(tx->counters().get("lifetime.stamped") == 2);
  for (Packet* p : tx.sink.transmitted) rx->receive(as_received(pool, *p), 5 * kMs);
  REQUIRE(rx.sink.delivered.size() == 2);
  CHECK(rx.sink.delivered[0]->expires_ns == 0);
  // Arrived at 5 ms with 10 ms left: deadline 5 + 10 - 1 (skew) ms on the receiver's clock.
  CHECK(rx.sink.delivered[1]->expires_ns == 14 * kMs);
  CHECK(rx->counters().get("lifetime.expired_received") == 1);
  // A message whose lifetime ran out before it left is not sent.
  Packet* late = pool.alloc();
  late->reset_for_send(1);
  late->lifetime_ns = 1;
  tx.sink.clear();
  tx->send(late, 0);
  CHECK(tx.sink.transmitted.empty());
  CHECK(tx->counters().get("lifetime.expired_sent") == 1);
}

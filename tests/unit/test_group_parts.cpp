// ordering.group's parts on their own, each driven through a recording StageIo instead of
// a pipeline: the message table (keyed entries, delivery by global number, gap skipping,
// cuts), the member sequencer (per-sender order, the window limit, announcements) and the
// agreement (the cut of a frozen term and the merged per-sender cut-offs; sparse statuses).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "primitives/ordering/group/agreement.hpp"
#include "primitives/ordering/group/member_sequencer.hpp"
#include "primitives/ordering/group/table.hpp"
#include "tmc/group.hpp"
#include "tmc/packet.hpp"

using namespace tmc;
using namespace tmc::detail::group_order;

namespace {

constexpr std::uint32_t kSelf = 1;
constexpr std::uint32_t kSelfEpoch = 100;

/// A StageIo that records what a part hands out.
class FakeIo final : public StageIo {
 public:
  FakeIo() : StageIo(&now), pool(2048, 64, 4096), counters(net_failovers + 1, 0) {
    view.reset("a", kSelf, kSelfEpoch, true, {"a", "b", "c"});
  }
  ~FakeIo() {
    for (Packet* p : sent) p->release();
    for (Packet* p : delivered) p->release();
  }
  FakeIo(const FakeIo&) = delete;
  FakeIo& operator=(const FakeIo&) = delete;

  void down(Packet* p) noexcept override { sent.push_back(p); }
  void up(Packet* p) noexcept override { delivered.push_back(p); }
  void drop(Packet* p, DropReason) noexcept override {
    ++drops;
    p->release();
  }
  void arm_timer(std::uint64_t) noexcept override {}
  void cancel_timer() noexcept override {}
  void count(std::size_t index, std::uint64_t n) noexcept override { counters.at(index) += n; }
  void notify(const Event& e) noexcept override { events.push_back(e); }
  Packet* alloc() noexcept override { return pool.alloc(); }
  Packet* clone(const Packet& p) noexcept override { return pool.clone(p); }
  Packet* alloc_large(std::uint32_t payload_bytes) noexcept override { return pool.alloc_large(payload_bytes); }
  Group& group() noexcept override { return view; }

  /// A data message (sender, epoch, seq) as the table holds it.
  Packet* data(std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq) {
    Packet* p = pool.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(8);
    p->sender = sender;
    p->epoch = epoch;
    p->seq = seq;
    return p;
  }
  [[nodiscard]] std::vector<std::uint64_t> delivered_seqs() const {
    std::vector<std::uint64_t> out;
    for (const Packet* p : delivered) out.push_back(p->seq);
    return out;
  }

  std::uint64_t now = 1'000'000;
  PacketPool pool;
  Group view;
  std::vector<std::uint64_t> counters;
  std::vector<Packet*> sent;
  std::vector<Packet*> delivered;
  std::vector<Event> events;
  std::size_t drops = 0;
};

StageEnv env() {
  StageEnv e;
  e.channel = 7;
  e.sender = kSelf;
  e.epoch = kSelfEpoch;
  e.max_payload_bytes = 1400;
  return e;
}

/// Store (sender, epoch, seq) with data in the table; its entry.
std::uint32_t hold(MsgTable& t, FakeIo& io, std::uint32_t sender, std::uint32_t epoch, std::uint64_t seq) {
  const std::uint32_t idx = t.insert(sender, epoch, seq, io.now);
  REQUIRE(idx != kNone);
  t.msg(idx).p = io.data(sender, epoch, seq);
  t.note_held(t.msg(idx), +1);
  return idx;
}

class Sink final : public MemberSequencer::AnnounceSink {
 public:
  void announced(std::uint32_t term_no, std::uint64_t top) noexcept override {
    last_term = term_no;
    last_top = top;
    ++calls;
  }
  std::uint32_t last_term = 0;
  std::uint64_t last_top = 0;
  int calls = 0;
};

}  // namespace

TEST_CASE("group table: entries stay findable across erases (backward-shift deletion)") {
  FakeIo io;
  MsgTable t;
  t.configure(env(), 512, 256, /*reliable=*/false, /*direct=*/false, 50'000'000);
  struct Key {
    std::uint32_t sender;
    std::uint32_t epoch;
    std::uint64_t seq;
    std::uint32_t idx;
  };
  std::vector<Key> keys;
  std::mt19937_64 rng(42);
  for (std::uint32_t i = 0; i < 512; ++i) {
    const Key k{1 + static_cast<std::uint32_t>(rng() % 5), 7, 1 + rng() % 100'000, 0};
    if (t.lookup(k.sender, k.epoch, k.seq) != kNone) continue;
    keys.push_back(k);
    keys.back().idx = t.insert(k.sender, k.epoch, k.seq, 0);
    REQUIRE(keys.back().idx != kNone);
  }
  // Fill what is left: a full table refuses.
  std::uint64_t extra = 200'000;
  while (!t.full()) REQUIRE(t.insert(9, 9, ++extra, 0) != kNone);
  CHECK(t.insert(9, 9, ++extra, 0) == kNone);

  std::shuffle(keys.begin(), keys.end(), rng);
  const std::size_t half = keys.size() / 2;
  for (std::size_t i = 0; i < half; ++i) t.erase(keys[i].idx);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const std::uint32_t found = t.lookup(keys[i].sender, keys[i].epoch, keys[i].seq);
    if (i < half) {
      CHECK(found == kNone);
    } else {
      CHECK(found == keys[i].idx);
    }
  }
  // Erased slots are reused, and everything is findable again.
  for (std::size_t i = 0; i < half; ++i) {
    keys[i].idx = t.insert(keys[i].sender, keys[i].epoch, keys[i].seq, 0);
    REQUIRE(keys[i].idx != kNone);
  }
  CHECK(t.full());
  for (const Key& k : keys) CHECK(t.lookup(k.sender, k.epoch, k.seq) == k.idx);
}

TEST_CASE("group table, unreliable: delivery in global order, a gap skipped and reported") {
  FakeIo io;
  MsgTable t;
  t.configure(env(), 64, 32, /*reliable=*/false, /*direct=*/false, 50'000'000);
  t.begin_term(gw::TermId{0, 2, 200});
  // Sender 2's messages 10, 11, 13 at globals 1, 2, 4; global 3 never comes.
  t.place(hold(t, io, 2, 200, 10), 1, io);
  t.place(hold(t, io, 2, 200, 11), 2, io);
  t.place(hold(t, io, 2, 200, 13), 4, io);
  CHECK(t.held() == 3);
  t.deliver_in_order(io);
  CHECK(io.delivered_seqs() == std::vector<std::uint64_t>{10, 11});
  CHECK(t.next_g() == 3);
  REQUIRE(t.gap_at() == io.now + 50'000'000);  // a later global waits: the gap clock runs

  io.now = t.gap_at();
  t.skip_gap(io);
  CHECK(io.delivered_seqs() == std::vector<std::uint64_t>{10, 11, 13});
  CHECK(t.next_g() == 5);
  CHECK(t.held() == 0);
  CHECK(io.counters[delivered] == 3);
  CHECK(io.counters[gaps_skipped] == 1);
  CHECK(io.counters[seqs_skipped] == 1);
  REQUIRE(io.events.size() == 1);
  CHECK(io.events[0].type == EventType::gap_skipped);
  CHECK(io.events[0].sender == 2);  // the term's sequencer
  CHECK(io.events[0].seq == 3);
  CHECK(io.events[0].count == 1);
  CHECK(t.gap_at() == 0);
}

TEST_CASE("group table, reliable: a cut delivers to its end and voids the rest") {
  FakeIo io;
  MsgTable t;
  t.configure(env(), 64, 32, /*reliable=*/true, /*direct=*/false, 50'000'000);
  t.begin_term(gw::TermId{1, 2, 200});
  t.place(hold(t, io, 3, 300, 1), 1, io);
  t.place(hold(t, io, 3, 300, 2), 2, io);
  // Global 3 missing although the cut (end 4) says every survivor holds it.
  t.place(hold(t, io, 3, 300, 4), 4, io);
  t.place(hold(t, io, 3, 300, 5), 5, io);
  t.deliver_through(4, /*step_unordered=*/false, io);
  CHECK(io.delivered_seqs() == std::vector<std::uint64_t>{1, 2, 4});
  CHECK(io.counters[cut_missing] == 1);
  CHECK(io.counters[seqs_skipped] == 1);
  CHECK(t.sender(t.find_sender(3, 300)).done_seq == 4);
  // Beyond the cut: the data stays for re-sequencing, its number is void.
  t.void_numbers(/*keep_unordered=*/true);
  const std::uint32_t idx = t.lookup(3, 300, 5);
  REQUIRE(idx != kNone);
  CHECK(t.msg(idx).g == 0);
  CHECK(t.msg(idx).p != nullptr);
  t.begin_term(gw::TermId{2, kSelf, kSelfEpoch});
  CHECK(t.next_g() == 1);
  CHECK_FALSE(t.deliverable(1));
}

TEST_CASE("group member sequencer: per-sender order, the window limit, one announcement per batch") {
  FakeIo io;
  MsgTable t;
  t.configure(env(), 64, 32, /*reliable=*/true, /*direct=*/false, 50'000'000);
  t.begin_term(gw::TermId{3, kSelf, kSelfEpoch});
  Sink sink;
  MemberSequencer seq;
  seq.configure(env(), /*reliable=*/true, 50'000'000, 100'000, sink);
  // Sender 5's messages 1..4 arrive out of order; 3 is missing.
  hold(t, io, 5, 500, 2);
  hold(t, io, 5, 500, 4);
  hold(t, io, 5, 500, 1);
  const std::uint32_t s = t.find_sender(5, 500);
  seq.begin(t);
  CHECK(t.sender(s).order_next == 1);
  t.sender(s).max_seen = 4;
  CHECK_FALSE(seq.order(t, s, /*limit=*/100, io));
  CHECK(seq.next_assign() == 3);  // 1 and 2 numbered; 4 waits for 3
  CHECK(t.sender(s).order_next == 3);
  CHECK(t.sender(s).wait_since_ns == io.now);

  hold(t, io, 5, 500, 3);
  CHECK(seq.order(t, s, /*limit=*/4, io));  // 3 gets global 3; global 4 is beyond the limit
  CHECK(seq.next_assign() == 4);
  CHECK(seq.order(t, s, /*limit=*/4, io));
  CHECK_FALSE(seq.order(t, s, /*limit=*/5, io));
  CHECK(seq.next_assign() == 5);
  CHECK(io.counters[assigned] == 4);
  for (std::uint64_t g = 1; g <= 4; ++g) {
    REQUIRE(t.at(g) != kNone);
    CHECK(t.msg(t.at(g)).seq == g);
  }

  // Reliable mode: the batch leaves from the tick due now, as one announcement.
  CHECK(seq.batching());
  CHECK(seq.flush_at() == io.now);
  seq.flush(io);
  REQUIRE(io.sent.size() == 1);
  const Packet* a = io.sent[0];
  std::uint8_t blen = 0;
  const std::uint8_t* body = a->ext(wire::Ext::order, &blen);
  std::uint32_t term_no = 0;
  std::uint32_t n = 0;
  REQUIRE(gw::parse_announce(body, blen, a->payload_len, term_no, n));
  CHECK(term_no == 3);
  REQUIRE(n == 4);
  for (std::uint32_t i = 0; i < n; ++i) {
    const gw::Entry e = gw::get_entry(a->payload() + std::size_t{i} * gw::kEntryBytes);
    CHECK(e.sender == 5);
    CHECK(e.epoch == 500);
    CHECK(e.seq == i + 1);
    CHECK(e.global == i + 1);
  }
  CHECK((a->flags & wire::kFlagReliable) != 0);
  CHECK(sink.calls == 1);
  CHECK(sink.last_term == 3);
  CHECK(sink.last_top == 4);
  CHECK_FALSE(seq.batching());
}

TEST_CASE("group agreement: the cut of a frozen term and the merged cut-offs") {
  FakeIo io;
  const int b = io.view.heard("b", 2, 200, true, io.now);
  const int c = io.view.heard("c", 3, 300, true, io.now);
  REQUIRE(b != kNoSlot);
  REQUIRE(c != kNoSlot);
  REQUIRE(io.view.receivers() == tmc::MemberSet::of({b, c}));

  MsgTable t;
  t.configure(env(), 64, 32, /*reliable=*/true, /*direct=*/false, 50'000'000);
  const gw::TermId term{4, 2, 200};  // b's term
  t.begin_term(term);
  Agreement agr;
  agr.configure(env(), 32);
  agr.begin_term(term, nullptr, 0);
  // This member holds globals 1..9 of the term, delivered none, and froze.
  for (std::uint64_t g = 1; g <= 9; ++g) t.place(hold(t, io, 3, 300, g), g, io);
  agr.freeze(t);
  CHECK(agr.frozen());
  CHECK(agr.reported_held(t) == 9);

  gw::CutRecord out[gw::kMaxRecords];
  std::uint32_t nout = 0;
  std::uint32_t max_no = 0;
  CHECK_FALSE(agr.choose_cuts(t, io.view, out, nout, max_no));  // no frozen status from b, c yet

  // b: frozen at the term, held 12, delivered 8, and it delivered sender 3 up to 8.
  // c: frozen at the term, held 7, delivered 7.
  const auto status = [&](std::uint32_t sender, std::uint32_t epoch, std::uint64_t held, std::uint64_t delivered,
                          std::vector<gw::Cutoff> cutoffs) {
    Packet* p = io.alloc();
    REQUIRE(p != nullptr);
    p->reset_for_send(static_cast<std::uint32_t>(cutoffs.size()) * gw::kCutoffBytes);
    for (std::size_t i = 0; i < cutoffs.size(); ++i) gw::put_cutoff(p->payload() + i * gw::kCutoffBytes, cutoffs[i]);
    p->sender = sender;
    p->epoch = epoch;
    gw::Status s;
    s.frozen = true;
    s.term = term;
    s.held = held;
    s.delivered = delivered;
    s.n_cutoffs = static_cast<std::uint32_t>(cutoffs.size());
    return agr.on_status(p, s, io);
  };
  REQUIRE(status(2, 200, 12, 8, {gw::Cutoff{3, 300, 8}, gw::Cutoff{9, 900, 5}}) != nullptr);
  CHECK_FALSE(agr.choose_cuts(t, io.view, out, nout, max_no));  // c still missing
  REQUIRE(status(3, 300, 7, 7, {}) != nullptr);
  CHECK(io.counters[statuses_received] == 2);

  REQUIRE(agr.choose_cuts(t, io.view, out, nout, max_no));
  REQUIRE(nout == 1);
  CHECK(gw::same_term(out[0].term, term));
  CHECK(out[0].end == 7);  // everyone at the term: the least held point
  CHECK(max_no == 4);

  // Cut-offs: the largest any receiver reports, for alive senders only (9 is unknown).
  std::vector<gw::Cutoff> merged;
  agr.merge_cutoffs(t, io.view, merged);
  REQUIRE(merged.size() == 1);
  CHECK(merged[0].sender == 3);
  CHECK(merged[0].epoch == 300);
  CHECK(merged[0].last_seq == 8);

  // A status from a member the view does not know is counted stale and not recorded.
  CHECK(status(8, 800, 1, 1, {}) == nullptr);
  CHECK(io.counters[stale] == 1);
}

// A group with more senders than one datagram holds cut-offs for (1,400-byte payloads:
// 82 per term start): the statuses carry what fits, the merge keeps every sender, and the
// term start goes as several packets of one term.
TEST_CASE("group agreement: cut-offs of a group larger than one datagram's") {
  FakeIo io;
  constexpr std::uint32_t kMembers = 100;
  std::vector<std::string> names;
  for (std::uint32_t i = 0; i < kMembers; ++i) names.push_back("m" + std::to_string(100 + i));
  io.view.reset(names[0], kSelf, kSelfEpoch, true, names);
  for (std::uint32_t i = 1; i < kMembers; ++i) REQUIRE(io.view.heard(names[i], 10 + i, 1000 + i, true, io.now) != kNoSlot);

  MsgTable t;
  t.configure(env(), 256, 32, /*reliable=*/true, /*direct=*/false, 50'000'000);
  const gw::TermId term{2, 11, 1001};
  t.begin_term(term);
  Agreement agr;
  agr.configure(env(), 32);
  agr.begin_term(term, nullptr, 0);
  agr.freeze(t);

  // Every other member reports a cut-off for half of the senders, the halves alternating,
  // 50 each (800 bytes): together they name all 99 senders.
  for (std::uint32_t i = 1; i < kMembers; ++i) {
    Packet* p = io.alloc();
    REQUIRE(p != nullptr);
    std::vector<gw::Cutoff> cut;
    for (std::uint32_t j = 1; j < kMembers; ++j) {
      if (j % 2 == i % 2) cut.push_back(gw::Cutoff{10 + j, 1000 + j, 5 + (i % 3)});
    }
    p->reset_for_send(static_cast<std::uint32_t>(cut.size()) * gw::kCutoffBytes);
    for (std::size_t k = 0; k < cut.size(); ++k) gw::put_cutoff(p->payload() + k * gw::kCutoffBytes, cut[k]);
    p->sender = 10 + i;
    p->epoch = 1000 + i;
    gw::Status s;
    s.frozen = true;
    s.term = term;
    s.n_cutoffs = static_cast<std::uint32_t>(cut.size());
    REQUIRE(agr.on_status(p, s, io) != nullptr);
  }
  std::vector<gw::Cutoff> merged;
  agr.merge_cutoffs(t, io.view, merged);
  REQUIRE(merged.size() == kMembers - 1);  // no ceiling below the group's size
  for (const gw::Cutoff& c : merged) CHECK(c.last_seq == 7);  // the largest reported
  // One start packet with one cut record holds (1400 - 64 - 20) / 16 = 82 of them.
  const std::uint32_t room = agr.start_cutoff_room(1);
  CHECK(room == 82);
  CHECK(room < merged.size());

  // A status with more cut-offs than 64 parses (the payload is the only bound).
  Packet* p = io.alloc();
  REQUIRE(p != nullptr);
  p->reset_for_send(70 * gw::kCutoffBytes);
  for (std::uint32_t k = 0; k < 70; ++k) gw::put_cutoff(p->payload() + std::size_t{k} * gw::kCutoffBytes, merged[k]);
  std::uint8_t body[gw::kStatusBody];
  gw::Status s;
  s.frozen = true;
  s.term = term;
  gw::write_status_body(body, s);
  gw::Status back;
  REQUIRE(gw::parse_status(body, gw::kStatusBody, p->payload(), p->payload_len, back));
  CHECK(back.n_cutoffs == 70);
  p->release();
}

TEST_CASE("group agreement: sparse statuses from eight receivers on") {
  FakeIo io;
  MsgTable t;
  t.configure(env(), 64, 32, /*reliable=*/true, /*direct=*/false, 50'000'000);
  const gw::TermId term{2, 2, 200};
  t.begin_term(term);
  Agreement agr;
  agr.configure(env(), 4096);
  agr.begin_term(term, nullptr, 0);

  // Seven receivers: every change of holdings is news at once, as in small groups.
  agr.fit_receivers(7);
  CHECK(agr.stride() == 1);
  t.place(hold(t, io, 3, 300, 1), 1, io);
  agr.note_progress(t, /*told=*/0, io);
  CHECK(agr.status_due() == io.now);
  CHECK(agr.tail_due() == 0);
  agr.send_status(t, io);
  CHECK(agr.sent_held() == 1);

  // Ten receivers: a stride of ten global numbers (within window / 16), the tail between.
  agr.fit_receivers(10);
  CHECK(agr.stride() == 10);
  CHECK(agr.own_stall_ns() == kOwnStallNs);  // under 32 receivers the periods stay
  for (std::uint64_t g = 2; g <= 9; ++g) {
    io.now += 1'000'000;
    t.place(hold(t, io, 3, 300, g), g, io);
    agr.note_progress(t, agr.sent_held(), io);
    CHECK(agr.status_due() == 0);
    CHECK(agr.tail_due() == io.now + kStatusTailNs);  // pushed on by every change
  }
  io.now += 1'000'000;
  t.place(hold(t, io, 3, 300, 10), 10, io);
  agr.note_progress(t, agr.sent_held(), io);
  CHECK(agr.status_due() == io.now);  // crossed the stride point 10
  agr.send_status(t, io);
  CHECK(agr.tail_due() == 0);
  CHECK(agr.sent_held() == 10);

  // Outside a failover the periodic status is a stall repair: only when neither holdings
  // nor delivery moved for a whole period.
  io.now += 20'000'000;
  CHECK(agr.periodic_at(/*failover=*/true) == agr.last_status_ns() + kStatusPeriodNs);
  CHECK_FALSE(agr.periodic_status(t, /*failover=*/false, io.now));  // first look: marks the point
  CHECK(agr.periodic_at(false) == io.now + kStatusPeriodNs);
  t.place(hold(t, io, 3, 300, 11), 11, io);
  io.now += kStatusPeriodNs;
  CHECK_FALSE(agr.periodic_status(t, false, io.now));  // holdings moved meanwhile
  io.now += kStatusPeriodNs;
  CHECK(agr.periodic_status(t, false, io.now));  // stalled
  CHECK(agr.periodic_status(t, /*failover=*/true, io.now));

  // Beyond 32 receivers the repeats and the own-stall check are spaced ⌈R / 32⌉ times.
  agr.fit_receivers(100);
  CHECK(agr.stride() == 100);
  CHECK(agr.own_stall_ns() == 4 * kOwnStallNs);
  CHECK(agr.periodic_at(/*failover=*/true) == agr.last_status_ns() + 4 * kStatusPeriodNs);
  agr.fit_receivers(1000);
  CHECK(agr.stride() == 4096 / 16);
}

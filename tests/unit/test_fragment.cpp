// fragment.split: splitting on send, reassembly on receive, and every hostile fragment.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../support/recording_sink.hpp"

using namespace tmc;
using namespace tmc::test;

namespace {

constexpr std::uint64_t kMs = 1'000'000;
using StageParams = std::initializer_list<std::pair<const std::string, std::string>>;

// A message body whose every byte depends on its position and a salt.
std::string body(std::size_t n, unsigned salt = 1) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + salt * 7 + (i >> 8)) & 0xFF);
  return s;
}

// Send `payload` as one message; above 100 bytes (the tests' fragment size) in a large
// buffer, as a shell does for a message larger than a datagram.
void send_msg(Endpoint& ep, std::string_view payload, std::uint64_t now_ns = 0, std::uint16_t flags = 0,
              std::uint64_t token = 0) {
  const auto n = static_cast<std::uint32_t>(payload.size());
  Packet* p = n <= 100 ? ep.pool.alloc() : ep.pool.alloc_large(n);
  REQUIRE(p != nullptr);
  p->reset_for_send(n);
  std::memcpy(p->payload(), payload.data(), n);
  p->flags = flags;
  p->token = token;
  ep->send(p, now_ns);
}

struct FragInfo {
  bool has = false;
  std::uint32_t id = 0, offset = 0, total = 0;
};

// Decode a transmitted (sealed) packet's bytes and read its fragment extension.
FragInfo frag_of(PacketPool& pool, const Packet& sent, std::uint64_t* seq = nullptr, std::uint16_t* flags = nullptr,
                 std::string* payload = nullptr) {
  Packet* r = as_received(pool, sent);
  REQUIRE(wire::decode(*r) == wire::DecodeError::none);
  FragInfo f;
  std::uint8_t len = 0;
  const std::uint8_t* b = r->ext(wire::Ext::fragment, &len);
  if (b != nullptr && len == 12) {
    f.has = true;
    f.id = wire::get_u32(b);
    f.offset = wire::get_u32(b + 4);
    f.total = wire::get_u32(b + 8);
  }
  if (seq != nullptr) {
    const std::uint8_t* s = r->ext(wire::Ext::seq, &len);
    *seq = s != nullptr && len == 8 ? wire::get_u64(s) : 0;
  }
  if (flags != nullptr) *flags = r->flags;
  if (payload != nullptr) payload->assign(reinterpret_cast<const char*>(r->payload()), r->payload_len);
  r->release();
  return f;
}

// A forged fragment datagram. ext_len_override != 12 writes a fragment extension of that
// length; with_ext = false sets the flag but omits the extension.
struct Forge {
  std::uint32_t sender = 7;
  std::uint32_t epoch = 1;
  std::uint64_t seq = 0;
  std::uint16_t flags = wire::kFlagFragment;
  bool with_ext = true;
  std::uint8_t ext_len = 12;
};

Packet* fragment(PacketPool& pool, std::uint32_t id, std::uint32_t offset, std::uint32_t total, std::string_view bytes,
                 const Forge& f = {}) {
  Packet* s = pool.alloc();
  REQUIRE(s != nullptr);
  s->reset_for_send(static_cast<std::uint32_t>(bytes.size()));
  std::memcpy(s->payload(), bytes.data(), bytes.size());
  s->flags = f.flags;
  s->channel = wire::channel_hash("test", 4);
  s->sender = f.sender;
  s->epoch = f.epoch;
  if (f.seq != 0) wire::put_u64(s->push_ext(wire::Ext::seq, 8), f.seq);
  if (f.with_ext) {
    std::uint8_t* b = s->push_ext(wire::Ext::fragment, f.ext_len);
    REQUIRE(b != nullptr);
    std::memset(b, 0, f.ext_len);
    if (f.ext_len >= 12) {
      wire::put_u32(b, id);
      wire::put_u32(b + 4, offset);
      wire::put_u32(b + 8, total);
    }
  }
  s->seal();
  Packet* r = as_received(pool, *s);
  s->release();
  return r;
}

// A receiver (and sender) with fragment.split only, small fragments for readable tests.
struct Rx {
  PacketPool pool{2048, 64, 1 << 14};
  Endpoint ep;
  explicit Rx(StageParams params = {{"fragment_bytes", "100"}})
      : ep(pool, make_plan({stage("fragment.split", params)}), make_env(100)) {}

  // Fragment [offset, offset + len) of message `id` (total bytes of body(total, salt)).
  void in(std::uint32_t id, std::uint32_t offset, std::uint32_t len, std::uint32_t total, std::uint64_t now_ns = 0,
          const Forge& f = {}, unsigned salt = 1) {
    const std::string all = body(total, salt);
    ep->receive(fragment(pool, id, offset, total, std::string_view(all).substr(offset, len), f), now_ns);
  }
  // Every fragment of a message cut at L, in the given order of indices.
  void in_msg(std::uint32_t id, std::uint32_t total, std::uint32_t frag_len, std::vector<std::uint32_t> order,
              std::uint64_t now_ns = 0, const Forge& f = {}, unsigned salt = 1) {
    for (std::uint32_t i : order) {
      const std::uint32_t off = i * frag_len;
      in(id, off, std::min(frag_len, total - off), total, now_ns, f, salt);
    }
  }
  std::uint64_t c(const char* name) const { return ep.pipeline->counters().get(name); }
  std::size_t held() const { return ep.pipeline->held_packets(); }
  std::vector<std::string> got() const { return ep.sink.payloads(); }
  std::uint64_t drops(DropReason r) { return ep->drops(r); }
};

}  // namespace

// --- send ---------------------------------------------------------------------------------

TEST_CASE("fragment.split send: a message that fits passes untouched, zero bytes added") {
  PacketPool pool(2048, 16, 1024);
  Endpoint with(pool, make_plan({stage("fragment.split", {{"fragment_bytes", "100"}})}), make_env(100));
  Endpoint without(pool, make_plan({}), make_env(100));
  send_msg(with, body(100));
  send_msg(without, body(100));
  REQUIRE(with.sink.transmitted.size() == 1);
  REQUIRE(without.sink.transmitted.size() == 1);
  const Packet& p = *with.sink.transmitted[0];
  CHECK(p.len == without.sink.transmitted[0]->len);
  CHECK(std::memcmp(p.data(), without.sink.transmitted[0]->data(), p.len) == 0);
  CHECK(p.n_ext == 0);
  CHECK((p.flags & wire::kFlagFragment) == 0);
  CHECK(with->counters().get("fragment.passed_whole") == 1);
  CHECK(with->counters().get("fragment.messages_split") == 0);
}

TEST_CASE("fragment.split send: a large message becomes ceil(len / fragment_bytes) fragments with flags and token") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("fragment.split", {{"fragment_bytes", "300"}})}), make_env(100));
  const std::string msg = body(1000);
  send_msg(ep, msg, 0, wire::kFlagReliable, 77);
  REQUIRE(ep.sink.transmitted.size() == 4);
  CHECK(pool.large_bytes() == 0);  // the large packet was released after splitting
  std::string joined;
  for (std::size_t i = 0; i < 4; ++i) {
    const Packet& t = *ep.sink.transmitted[i];
    std::uint16_t flags = 0;
    std::string part;
    const FragInfo f = frag_of(pool, t, nullptr, &flags, &part);
    CHECK(f.has);
    CHECK(f.id == 1);
    CHECK(f.offset == i * 300);
    CHECK(f.total == 1000);
    CHECK(flags == (wire::kFlagFragment | wire::kFlagReliable));
    CHECK(t.token == 77);
    CHECK(t.payload_len == (i < 3 ? 300u : 100u));
    joined += part;
  }
  CHECK(joined == msg);
  // Message ids increase per fragmented message only.
  send_msg(ep, body(50));
  send_msg(ep, body(301));
  REQUIRE(ep.sink.transmitted.size() == 7);
  CHECK(!frag_of(pool, *ep.sink.transmitted[4]).has);
  CHECK(frag_of(pool, *ep.sink.transmitted[5]).id == 2);
  CHECK(frag_of(pool, *ep.sink.transmitted[6]).offset == 300);
  CHECK(ep->counters().get("fragment.messages_split") == 2);
  CHECK(ep->counters().get("fragment.fragments_sent") == 6);
}

TEST_CASE("fragment.split send: a message above max_message_bytes is dropped as too large") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("fragment.split", {{"fragment_bytes", "100"}, {"max_message_bytes", "500"}})}),
              make_env(100));
  send_msg(ep, body(501));
  send_msg(ep, body(500));
  CHECK(ep.sink.transmitted.size() == 5);
  CHECK(ep->drops(DropReason::too_large) == 1);
  CHECK(ep->counters().get("fragment.too_large_sent") == 1);
  CHECK(pool.large_bytes() == 0);
}

TEST_CASE("fragment.split send: the extensions of the stages above are on every fragment") {
  PacketPool pool(2048, 16, 1024);
  Endpoint ep(pool, make_plan({stage("ordering.seq"), stage("fragment.split", {{"fragment_bytes", "100"}})}),
              make_env(100));
  send_msg(ep, body(10));
  send_msg(ep, body(250));
  REQUIRE(ep.sink.transmitted.size() == 4);
  std::uint64_t seq = 0;
  CHECK(!frag_of(pool, *ep.sink.transmitted[0], &seq).has);
  CHECK(seq == 1);
  for (std::size_t i = 1; i < 4; ++i) {
    CHECK(frag_of(pool, *ep.sink.transmitted[i], &seq).has);
    CHECK(seq == 2);
  }
}

TEST_CASE("fragment.split send: a dry pool mid-message queues the rest, keeps order and resumes on a tick") {
  PacketPool pool(2048, 4, 4);  // four pool buffers; the sink holds on to what it gets
  Endpoint ep(pool, make_plan({stage("fragment.split", {{"fragment_bytes", "100"}})}), make_env(100));
  const std::string big = body(1000);
  send_msg(ep, big, 0);
  CHECK(ep.sink.transmitted.size() == 4);
  CHECK(ep->counters().get("fragment.pool_waits") == 1);
  CHECK(ep->held_packets() == 1);
  REQUIRE(ep->next_deadline_ns() != 0);
  // A small message sent meanwhile waits behind the large one. Its buffer comes from a
  // pool with room, as the shell's would.
  PacketPool other(2048, 4, 4);
  Packet* small = other.alloc();
  small->reset_for_send(5);
  std::memcpy(small->payload(), "small", 5);
  ep->send(small, 10);
  CHECK(ep->held_packets() == 2);
  std::vector<FragInfo> seen;
  std::string joined;
  std::vector<std::string> whole;
  std::uint64_t now = 10;
  for (int round = 0; round < 10 && ep->held_packets() > 0; ++round) {
    for (Packet* t : ep.sink.transmitted) {
      std::string part;
      const FragInfo f = frag_of(other, *t, nullptr, nullptr, &part);
      if (f.has) {
        seen.push_back(f);
        joined += part;
      } else {
        whole.push_back(part);
      }
    }
    ep.sink.clear();
    now = std::max(now, ep->next_deadline_ns());
    ep->tick(now);
  }
  for (Packet* t : ep.sink.transmitted) {
    std::string part;
    const FragInfo f = frag_of(other, *t, nullptr, nullptr, &part);
    if (f.has) {
      seen.push_back(f);
      joined += part;
    } else {
      whole.push_back(part);
    }
  }
  CHECK(ep->held_packets() == 0);
  REQUIRE(seen.size() == 10);
  for (std::size_t i = 0; i < seen.size(); ++i) CHECK(seen[i].offset == i * 100);
  CHECK(joined == big);
  CHECK(whole == std::vector<std::string>{"small"});
  CHECK(ep->counters().get("fragment.pool_waits") >= 2);
  CHECK(pool.large_bytes() == 0);
}

TEST_CASE("fragment.split send: a full send queue drops whole messages and counts them") {
  PacketPool pool(2048, 1, 1);
  Endpoint ep(pool, make_plan({stage("fragment.split", {{"fragment_bytes", "100"}, {"send_queue_messages", "1"}})}),
              make_env(100));
  send_msg(ep, body(500));
  CHECK(ep.sink.transmitted.size() == 1);
  send_msg(ep, body(500));
  CHECK(ep->drops(DropReason::buffer_full) == 1);
  CHECK(ep->counters().get("fragment.queue_full") == 1);
  CHECK(ep->held_packets() == 1);
}

// --- round trip ---------------------------------------------------------------------------

TEST_CASE("fragment.split: round trip under ordering.seq + ordering.fifo strict, out of order and duplicated") {
  PacketPool pool(2048, 64, 1 << 14);
  const Plan plan = make_plan({stage("ordering.fifo", {{"mode", "strict"}}), stage("ordering.seq"),
                               stage("fragment.split", {{"fragment_bytes", "100"}})});
  Endpoint tx(pool, plan, make_env(7));
  Endpoint rx(pool, plan, make_env(8));
  const std::vector<std::string> msgs = {body(950, 1), body(3, 2), body(100, 3), body(101, 4), body(5000, 5)};
  for (const auto& m : msgs) send_msg(tx, m, 0, wire::kFlagReliable);
  // Deliver in reverse, each twice.
  std::vector<Packet*> batch;
  batch.swap(tx.sink.transmitted);
  CHECK(batch.size() == 10 + 1 + 1 + 2 + 50);
  for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
    rx->receive(as_received(pool, **it), 1);
    rx->receive(as_received(pool, **it), 2);
  }
  for (Packet* p : batch) p->release();
  CHECK(rx.sink.payloads() == msgs);
  CHECK(rx.sink.seqs() == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  for (const Packet* p : rx.sink.delivered) {
    CHECK(p->sender == 7);
    CHECK(p->epoch == 1000);
    CHECK(p->flags == wire::kFlagReliable);
    CHECK(p->ext(wire::Ext::fragment) == nullptr);
  }
  CHECK(rx->counters().get("fragment.messages_reassembled") == 3);
  CHECK(rx->counters().get("fragment.duplicates") + rx->counters().get("fragment.late") == 62);
  CHECK(rx->held_packets() == 0);
  rx.sink.clear();
  CHECK(pool.large_bytes() == 0);
  CHECK(pool.in_use() == 0);
}

// --- hostile fragments ----------------------------------------------------------------------

TEST_CASE("fragment.split receive: malformed fragments are dropped and never disturb a message") {
  Rx rx;
  SUBCASE("flag without extension") {
    Forge f;
    f.with_ext = false;
    rx.in(1, 0, 100, 300, 0, f);
  }
  SUBCASE("extension of the wrong length") {
    Forge f;
    f.ext_len = 8;
    rx.in(1, 0, 8, 300, 0, f);
  }
  SUBCASE("offset + length beyond the total") { rx.ep->receive(fragment(rx.pool, 1, 250, 300, body(100)), 0); }
  SUBCASE("offset overflowing 32 bits") { rx.ep->receive(fragment(rx.pool, 1, 0xFFFFFFF0u, 300, body(100)), 0); }
  SUBCASE("total of zero") { rx.ep->receive(fragment(rx.pool, 1, 0, 0, body(10)), 0); }
  SUBCASE("empty fragment") { rx.ep->receive(fragment(rx.pool, 1, 0, 300, ""), 0); }
  SUBCASE("a fragment other than the last shorter than 16 bytes") { rx.in(1, 0, 15, 300); }
  SUBCASE("a first fragment misaligned with its own length") { rx.in(1, 50, 100, 300); }
  CHECK(rx.drops(DropReason::malformed) == 1);
  CHECK(rx.c("fragment.malformed") == 1);
  CHECK(rx.held() == 0);
  CHECK(rx.got().empty());
  CHECK(rx.pool.large_bytes() == 0);
}

TEST_CASE("fragment.split receive: a total above max_message_bytes is refused before any memory is taken") {
  Rx rx({{"fragment_bytes", "100"}, {"max_message_bytes", "1000"}});
  rx.ep->receive(fragment(rx.pool, 1, 0, 1001, body(100)), 0);
  rx.ep->receive(fragment(rx.pool, 2, 0, 0xFFFFFFFFu, body(100)), 0);
  CHECK(rx.drops(DropReason::too_large) == 2);
  CHECK(rx.c("fragment.too_large_received") == 2);
  CHECK(rx.held() == 0);
  CHECK(rx.pool.large_bytes() == 0);
}

TEST_CASE("fragment.split receive: inconsistent fragments of a message are ignored, the message still completes") {
  Rx rx;
  const std::string msg = body(350);
  rx.in(1, 0, 100, 350);                                                   // L = 100
  rx.ep->receive(fragment(rx.pool, 1, 100, 400, body(400).substr(100, 100)), 0);  // other total
  rx.in(1, 100, 50, 350);                                                  // short, not last
  rx.in(1, 150, 100, 350);                                                 // misaligned
  rx.in(1, 200, 120, 350);                                                 // another L
  rx.in(1, 200, 150, 350);                                                 // last at the wrong offset
  CHECK(rx.c("fragment.malformed") == 5);
  CHECK(rx.got().empty());
  rx.in(1, 0, 100, 350);  // duplicate
  CHECK(rx.c("fragment.duplicates") == 1);
  CHECK(rx.drops(DropReason::duplicate) == 1);
  rx.in_msg(1, 350, 100, {3, 1, 2});
  CHECK(rx.got() == std::vector<std::string>{msg});
  CHECK(rx.held() == 0);
}

TEST_CASE("fragment.split receive: a last fragment seen before the fragment length is checked when it is learnt") {
  SUBCASE("consistent") {
    Rx rx;
    rx.in(1, 300, 50, 350);
    rx.in(1, 300, 50, 350);  // duplicate of the provisional last
    CHECK(rx.c("fragment.duplicates") == 1);
    rx.in(1, 250, 100, 350);  // another 'last' at another offset: inconsistent
    CHECK(rx.c("fragment.malformed") == 1);
    rx.in_msg(1, 350, 100, {2, 0, 1});
    CHECK(rx.got() == std::vector<std::string>{body(350)});
  }
  SUBCASE("a bogus provisional last is discarded and the real one accepted") {
    Rx rx;
    rx.in(1, 250, 100, 350);  // would be right for L = 125 or 250, not for 100
    rx.in_msg(1, 350, 100, {0, 1, 2});
    CHECK(rx.c("fragment.malformed") == 1);
    CHECK(rx.got().empty());
    rx.in(1, 300, 50, 350);
    CHECK(rx.got() == std::vector<std::string>{body(350)});
  }
  SUBCASE("a message in one fragment") {
    Rx rx;
    rx.in(1, 0, 40, 40);
    CHECK(rx.got() == std::vector<std::string>{body(40)});
  }
}

TEST_CASE("fragment.split receive: a message is delivered once; late and duplicated fragments are dropped") {
  Rx rx;
  rx.in_msg(5, 250, 100, {0, 1, 2});
  rx.in_msg(5, 250, 100, {0, 1, 2});
  CHECK(rx.got().size() == 1);
  CHECK(rx.c("fragment.late") == 3);
  CHECK(rx.held() == 0);
  rx.ep.sink.clear();
  CHECK(rx.pool.large_bytes() == 0);
  // Older and newer ids still work; an id far behind the window is late.
  rx.in_msg(3, 150, 100, {1, 0});
  rx.in_msg(5000, 150, 100, {0, 1});
  rx.in_msg(6, 150, 100, {0});
  CHECK(rx.got().size() == 2);
  CHECK(rx.c("fragment.late") == 4);
}

TEST_CASE("fragment.split receive: the extensions of the first fragment are restored on the message") {
  PacketPool pool(2048, 64, 1 << 14);
  Endpoint rx(pool, make_plan({stage("ordering.seq"), stage("fragment.split", {{"fragment_bytes", "100"}})}),
              make_env(100));
  Forge f;
  f.seq = 42;
  const std::string msg = body(230);
  rx->receive(fragment(pool, 1, 200, 230, std::string_view(msg).substr(200), f), 0);
  rx->receive(fragment(pool, 1, 0, 230, std::string_view(msg).substr(0, 100), f), 0);
  rx->receive(fragment(pool, 1, 100, 230, std::string_view(msg).substr(100, 100), f), 0);
  REQUIRE(rx.sink.delivered.size() == 1);
  const Packet& m = *rx.sink.delivered[0];
  CHECK(m.seq == 42);  // ordering.seq read it from the restored extension
  CHECK(m.n_ext == 1);
  CHECK(m.ext(wire::Ext::fragment) == nullptr);
  CHECK(rx.sink.payloads() == std::vector<std::string>{msg});
  CHECK(m.src_ip == 0);
}

TEST_CASE("fragment.split receive: a first fragment whose extensions cannot fit the headroom is malformed") {
  Rx rx;
  // Hand-built datagram: base header, the fragment extension and two 200-byte module
  // extensions, then 100 bytes of payload.
  std::vector<std::uint8_t> d(24);
  auto ext = [&d](std::uint8_t type, std::vector<std::uint8_t> b) {
    d.push_back(type);
    d.push_back(static_cast<std::uint8_t>(b.size()));
    d.insert(d.end(), b.begin(), b.end());
  };
  std::vector<std::uint8_t> fb(12);
  wire::put_u32(fb.data(), 1);
  wire::put_u32(fb.data() + 4, 0);
  wire::put_u32(fb.data() + 8, 300);
  ext(2, fb);
  ext(200, std::vector<std::uint8_t>(200, 1));
  ext(201, std::vector<std::uint8_t>(200, 2));
  const auto ext_bytes = static_cast<std::uint16_t>(d.size() - 24);
  d.resize(d.size() + 100, 7);
  wire::put_u16(d.data(), wire::kMagic);
  d[2] = wire::kVersion;
  d[3] = 0;
  wire::put_u16(d.data() + 4, wire::kFlagFragment);
  wire::put_u16(d.data() + 6, ext_bytes);
  wire::put_u32(d.data() + 8, wire::channel_hash("test", 4));
  wire::put_u32(d.data() + 12, 7);
  wire::put_u32(d.data() + 16, 1);
  wire::put_u32(d.data() + 20, 100);
  Packet* p = rx.pool.alloc();
  p->reset_for_receive();
  std::memcpy(p->buf, d.data(), d.size());
  p->len = static_cast<std::uint32_t>(d.size());
  rx.ep->receive(p, 0);
  CHECK(rx.c("fragment.malformed") == 1);
  CHECK(rx.held() == 0);
}

// --- time and memory ----------------------------------------------------------------------------

TEST_CASE("fragment.split receive: a partial message times out whole, counted; progress extends the deadline") {
  Rx rx({{"fragment_bytes", "100"}, {"reassembly_timeout_us", "1000"}});
  rx.in(1, 0, 100, 300, 0);
  rx.in(2, 0, 100, 300, 0);
  CHECK(rx.held() == 2);
  CHECK(rx.ep->next_deadline_ns() == 1 * kMs);
  rx.in(2, 100, 100, 300, kMs / 2);  // message 2 progresses
  rx.ep->tick(1 * kMs);
  CHECK(rx.held() == 1);
  CHECK(rx.drops(DropReason::incomplete) == 1);
  CHECK(rx.c("fragment.incomplete") == 1);
  CHECK(rx.ep->next_deadline_ns() == kMs / 2 + kMs);
  rx.in(1, 100, 100, 300, kMs + 1);  // late: message 1 was given up on
  CHECK(rx.c("fragment.late") == 1);
  CHECK(rx.held() == 1);
  rx.ep->tick(kMs / 2 + kMs);
  CHECK(rx.held() == 0);
  CHECK(rx.drops(DropReason::incomplete) == 2);
  CHECK(rx.ep->next_deadline_ns() == 0);
  CHECK(rx.pool.large_bytes() == 0);
  CHECK(rx.got().empty());
}

TEST_CASE("fragment.split receive: max_partial_per_sender evicts that sender's stalest partial message") {
  Rx rx({{"fragment_bytes", "100"}, {"max_partial_per_sender", "2"}});
  rx.in(1, 0, 100, 300, 1);
  rx.in(2, 0, 100, 300, 2);
  Forge other;
  other.sender = 9;
  rx.in(1, 0, 100, 300, 3, other);
  rx.in(1, 100, 100, 300, 4);  // message 1 of sender 7 progresses: message 2 is the stalest
  rx.in(3, 0, 100, 300, 5);
  CHECK(rx.held() == 3);
  CHECK(rx.drops(DropReason::reassembly_full) == 1);
  CHECK(rx.c("fragment.evicted") == 1);
  rx.in_msg(1, 300, 100, {2});
  rx.in_msg(1, 300, 100, {1, 2}, 6, other);
  rx.in_msg(3, 300, 100, {1, 2});
  CHECK(rx.got().size() == 3);
  rx.in(2, 100, 100, 300, 7);  // the evicted message never comes back
  CHECK(rx.c("fragment.late") == 1);
  CHECK(rx.held() == 0);
}

TEST_CASE("fragment.split receive: max_reassembly_bytes bounds memory; the stalest partial goes first") {
  // Each 1000-byte partial is charged 256 + 1000 + 4 + 64 bytes: room for two.
  Rx rx({{"fragment_bytes", "100"}, {"max_reassembly_bytes", "3000"}});
  rx.in(1, 0, 100, 1000, 1);
  Forge b;
  b.sender = 8;
  rx.in(1, 0, 100, 1000, 2, b);
  CHECK(rx.held() == 2);
  Forge c;
  c.sender = 9;
  rx.in(1, 0, 100, 1000, 3, c);
  CHECK(rx.held() == 2);
  CHECK(rx.drops(DropReason::reassembly_full) == 1);
  CHECK(rx.pool.large_bytes() <= 3000);
  // A message that alone exceeds the budget is refused without evicting anyone.
  rx.in(2, 0, 100, 5000, 4);
  CHECK(rx.drops(DropReason::reassembly_full) == 2);
  CHECK(rx.held() == 2);
}

TEST_CASE("fragment.split receive: a hostile flood of ids, sizes and senders stays within the limits") {
  Rx rx({{"fragment_bytes", "100"},
         {"max_reassembly_bytes", "2000000"},
         {"max_partial_per_sender", "4"},
         {"max_senders", "8"}});
  std::uint64_t now = 0;
  for (std::uint32_t i = 0; i < 3000; ++i) {
    Forge f;
    f.sender = 1 + i % 13;
    f.epoch = 1 + (i / 1000);
    const std::uint32_t total = 1000 + (i * 7919) % 400000;
    rx.ep->receive(fragment(rx.pool, i * 3, (i % 5) * 100, total, body(100, i), f), ++now);
    CHECK(rx.pool.large_bytes() <= 2000000);
    CHECK(rx.held() <= 8 * 4);
  }
  CHECK(rx.c("fragment.senders_evicted") > 0);
  CHECK(rx.c("fragment.partials_started") ==
        rx.c("fragment.messages_reassembled") + rx.c("fragment.incomplete") + rx.c("fragment.evicted") +
            rx.held());
}

TEST_CASE("fragment.split receive: a restarted sender's partial messages are dropped; its old epoch is stale") {
  Rx rx;
  rx.in(1, 0, 100, 300, 0);
  Forge next;
  next.epoch = 2;
  rx.in(1, 0, 100, 300, 1, next);
  CHECK(rx.drops(DropReason::incomplete) == 1);
  CHECK(rx.held() == 1);
  rx.in(1, 100, 100, 300, 2);  // epoch 1 again
  CHECK(rx.drops(DropReason::stale_epoch) == 1);
  rx.in_msg(1, 300, 100, {1, 2}, 3, next);
  CHECK(rx.got() == std::vector<std::string>{body(300)});
}

TEST_CASE("fragment.split receive: without a large buffer the fragment is dropped and counted") {
  Rx rx;
  rx.pool.set_large_budget_bytes(500);
  rx.in(1, 0, 100, 300, 0);
  CHECK(rx.c("fragment.alloc_failed") == 1);
  CHECK(rx.drops(DropReason::reassembly_full) == 1);
  CHECK(rx.held() == 0);
  rx.pool.set_large_budget_bytes(1 << 20);
  rx.in_msg(1, 300, 100, {0, 1, 2});
  CHECK(rx.got().size() == 1);
}

TEST_CASE("fragment.split: packets that are not fragments pass through in both directions") {
  Rx rx;
  rx.ep->receive(datagram(rx.pool, 7, 1, 0, "hello"), 0);
  rx.ep->receive(datagram(rx.pool, 7, 1, 0, std::string(200, 'a'), 0, wire::Kind::ack), 0);
  CHECK(rx.got() == std::vector<std::string>{"hello", std::string(200, 'a')});
  CHECK(rx.c("fragment.fragments_received") == 0);
}

TEST_CASE("fragment.split: configure rejects out-of-range parameters, naming them") {
  PacketPool pool(2048, 4, 16);
  RecordingSink sink;
  std::unique_ptr<Pipeline> pl;
  const Status st = Pipeline::build(make_plan({stage("fragment.split", {{"fragment_bytes", "8"},
                                                                        {"max_partial_per_sender", "0"}})}),
                                    Registry::builtin(), make_env(1), pool, sink, pl);
  CHECK(!st.is_ok());
  CHECK(st.to_string().find("fragment_bytes") != std::string::npos);
  CHECK(st.to_string().find("max_partial_per_sender") != std::string::npos);
}

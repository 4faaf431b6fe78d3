// The simulator shell: an event queue in virtual time driving real pipelines over
// simulated links. See network.hpp for what is modelled and what is not.
#include "sim/network.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "tmc/status.hpp"
#include "tmc/wire.hpp"

namespace tmc::sim {
namespace {

constexpr std::uint32_t kFirstIp = 0x0A000001;  // 10.0.0.1
constexpr std::uint16_t kDefaultPort = 4000;
// Room past the payload for the CRC trailer and any stage that appends a little.
constexpr std::uint32_t kTailroom = 64;

// FNV-1a over everything fed to it; stable across platforms because every integer is fed
// byte by byte in a fixed order.
class Hasher {
 public:
  void bytes(const void* data, std::size_t n) noexcept {
    const auto* p = static_cast<const std::uint8_t*>(data);
    for (std::size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001B3ull;
    }
  }
  void u64(std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) {
      const auto b = static_cast<std::uint8_t>(v >> (8 * i));
      bytes(&b, 1);
    }
  }
  void str(std::string_view s) noexcept {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  [[nodiscard]] std::uint64_t value() const noexcept { return h_; }

 private:
  std::uint64_t h_ = 0xCBF29CE484222325ull;
};

std::string ip_string(std::uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 0xFF) + "." + std::to_string((ip >> 8) & 0xFF) +
         "." + std::to_string(ip & 0xFF);
}

}  // namespace

LinkStats& LinkStats::operator+=(const LinkStats& o) noexcept {
  copies += o.copies;
  lost += o.lost;
  partitioned += o.partitioned;
  duplicated += o.duplicated;
  reordered += o.reordered;
  corrupted += o.corrupted;
  arrived += o.arrived;
  corrupted_arrived += o.corrupted_arrived;
  to_down_member += o.to_down_member;
  oversize += o.oversize;
  pool_exhausted += o.pool_exhausted;
  unroutable += o.unroutable;
  return *this;
}

Plan make_plan(std::vector<PlannedStage> stages, std::string channel_id) {
  Plan p;
  p.channel_hash = wire::channel_hash(channel_id.data(), channel_id.size());
  p.channel_id = std::move(channel_id);
  // member stays empty: add_member() names each member "m<index>" (the group view needs distinct names).
  p.transport.group = "239.255.0.1";
  p.transport.port = kDefaultPort;
  p.stages = std::move(stages);
  return p;
}

PlannedStage stage(std::string kind, std::map<std::string, std::string, std::less<>> params) {
  PlannedStage s;
  s.kind = std::move(kind);
  s.params = std::move(params);
  s.placement = Placement::software;
  s.reason = "simulator scenario";
  return s;
}

// ---------------------------------------------------------------------------------------

struct Network::QueuedEvent {
  std::uint64_t time_ns = 0;
  std::uint64_t order = 0;
  EventKind kind = EventKind::call;
  std::size_t member = 0;
  std::size_t from = 0;              // arrival: source member
  std::uint32_t incarnation = 0;     // timer: which pipeline armed it
  std::uint64_t deadline_ns = 0;     // timer: the deadline it stands for
  std::uint16_t flags = 0;           // app_send
  bool corrupted = false;            // arrival
  std::vector<std::uint8_t> bytes;   // arrival: datagram; app_send: payload
  std::function<void()> fn;          // call
};

class Network::Sink final : public PipelineSink {
 public:
  Sink(Network& net, std::size_t index) : net_(net), index_(index) {}
  void transmit(Packet* p) noexcept override { net_.on_transmit(index_, p); }
  void deliver(Packet* p) noexcept override { net_.on_deliver(index_, p); }
  void on_event(const Event& e) noexcept override { net_.on_event(index_, e); }

 private:
  Network& net_;
  std::size_t index_;
};

struct Network::Member {
  std::size_t index = 0;
  Plan plan;
  const Registry* registry = nullptr;
  std::uint32_t sender_id = 0;
  std::uint32_t ip = 0;
  std::uint16_t port = kDefaultPort;
  std::uint32_t max_payload_bytes = 0;
  std::uint32_t incarnation = 0;
  std::uint32_t epoch = 0;
  bool up = false;
  std::uint64_t armed_ns = 0;  // the deadline the queued timer event stands for; 0 = none
  std::uint64_t paused_until_ns = 0;  // pause(): its timer and input wait until then

  std::vector<Delivery> deliveries;
  std::vector<RecordedEvent> events;
  std::vector<SentMessage> sent;
  std::vector<CounterSnapshot> previous_counters;
  LinkStats stats;

  // Declaration order matters: the pipeline (whose stages may release held packets in
  // their destructors) is destroyed before its sink and its pool.
  std::unique_ptr<PacketPool> pool;
  std::unique_ptr<Sink> sink;
  std::unique_ptr<Pipeline> pipeline;
};

Network::Network(Config config) : config_(std::move(config)), rng_(derive(config_.seed, 0, 0, 0xA11CE)) {}

Network::~Network() {
  if (fingerprint_sink_) fingerprint_sink_(fingerprint());
  // Take pipelines down before the queue (which holds no packets, only bytes) so stage
  // destructors run while their pools exist.
  for (auto& m : members_) {
    m->pipeline.reset();
    m->sink.reset();
    m->pool.reset();
  }
}

bool Network::idle() const noexcept { return queue_.empty(); }
std::size_t Network::pending_events() const noexcept { return queue_.size(); }

Network::Member& Network::member(std::size_t i) {
  if (i >= members_.size()) {
    throw std::out_of_range("tmc::sim::Network: no member " + std::to_string(i) + " (the network has " +
                            std::to_string(members_.size()) + ")");
  }
  return *members_[i];
}

const Network::Member& Network::member(std::size_t i) const {
  return const_cast<Network*>(this)->member(i);
}

// --- members ------------------------------------------------------------------------------

std::size_t Network::add_member(const Plan& plan, const Registry& registry) {
  auto m = std::make_unique<Member>();
  m->index = members_.size();
  m->plan = plan;
  if (m->plan.channel_hash == 0) {
    m->plan.channel_hash = wire::channel_hash(m->plan.channel_id.data(), m->plan.channel_id.size());
  }
  // Members need names for the group view (membership heartbeats carry them).
  if (m->plan.member.empty()) m->plan.member = "m" + std::to_string(m->index);
  m->registry = &registry;
  m->ip = kFirstIp + static_cast<std::uint32_t>(m->index);
  m->port = plan.transport.port != 0 ? plan.transport.port : kDefaultPort;
  m->max_payload_bytes =
      plan.transport.max_payload_bytes != 0 ? plan.transport.max_payload_bytes : config_.max_payload_bytes;
  // Sender ids are random (as on a real host) but derived from the seed, and unique.
  for (std::uint64_t attempt = 0;; ++attempt) {
    const auto id = static_cast<std::uint32_t>(derive(config_.seed, m->index, attempt, 1));
    if (id != 0 && member_of_sender(id) == kNoMember) {
      m->sender_id = id;
      break;
    }
  }
  m->epoch = static_cast<std::uint32_t>(derive(config_.seed, m->index, 0, 2));
  if (m->epoch == 0) m->epoch = 1;
  build(*m);
  m->up = true;
  members_.push_back(std::move(m));
  start(members_.size() - 1);
  return members_.size() - 1;
}

void Network::start(std::size_t i) {
  Member& m = *members_[i];
  m.pipeline->start(now_ns_);
  rearm(i);
}

void Network::build(Member& m) {
  StageEnv env;
  env.channel = m.plan.channel_hash;
  env.sender = m.sender_id;
  env.epoch = m.epoch;
  env.seed = derive(config_.seed, m.index, m.incarnation, 3);
  env.incarnation_random = derive(config_.seed, m.index, m.incarnation, 4);
  env.max_payload_bytes = m.max_payload_bytes;
  env.unicast_reachable = true;  // member i is 10.0.0.(i+1): on_transmit routes by dst_ip
  auto pool = std::make_unique<PacketPool>(kHeadroom + m.max_payload_bytes + kTailroom, config_.pool_initial_packets,
                                           config_.pool_max_packets);
  auto sink = std::make_unique<Sink>(*this, m.index);
  std::unique_ptr<Pipeline> pipeline;
  const Status s = Pipeline::build(m.plan, *m.registry, env, *pool, *sink, pipeline);
  if (!s) {
    throw Error(Status(s.code(), "sim member " + std::to_string(m.index) + ": " + s.message()));
  }
  m.pool = std::move(pool);
  m.sink = std::move(sink);
  m.pipeline = std::move(pipeline);
  m.armed_ns = 0;
}

void Network::leave(std::size_t i, bool graceful) {
  Member& m = member(i);
  if (!m.up) return;
  // A graceful leave lets the stages say goodbye (what they transmit still goes out); a
  // crash does not.
  if (graceful) m.pipeline->stop(now_ns_);
  m.previous_counters.push_back(m.pipeline->counters());
  m.pipeline.reset();
  m.sink.reset();
  m.pool.reset();
  m.up = false;
  m.armed_ns = 0;
  if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " member " << i << " leaves\n";
}

void Network::rejoin(std::size_t i) {
  Member& m = member(i);
  if (m.up) return;
  ++m.incarnation;
  // A fresh random epoch, as a restarted process would pick; never the previous one.
  auto e = static_cast<std::uint32_t>(derive(config_.seed, m.index, m.incarnation, 2));
  while (e == 0 || e == m.epoch) ++e;
  m.epoch = e;
  build(m);
  m.up = true;
  start(i);
  if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " member " << i << " rejoins, epoch " << m.epoch << "\n";
}

bool Network::is_up(std::size_t i) const { return member(i).up; }
std::uint32_t Network::sender_id(std::size_t i) const { return member(i).sender_id; }
std::uint32_t Network::epoch(std::size_t i) const { return member(i).epoch; }
std::uint32_t Network::ip(std::size_t i) const { return member(i).ip; }

std::size_t Network::member_of_sender(std::uint32_t id) const noexcept {
  for (const auto& m : members_) {
    if (m->sender_id == id) return m->index;
  }
  return kNoMember;
}

// --- links and partitions -------------------------------------------------------------------

void Network::set_link(std::size_t from, std::size_t to, const LinkParams& l) {
  (void)member(from);
  (void)member(to);
  pair_links_[{from, to}] = l;
}

void Network::set_link_to(std::size_t to, const LinkParams& l) {
  (void)member(to);
  to_links_[to] = l;
}

void Network::set_link_from(std::size_t from, const LinkParams& l) {
  (void)member(from);
  from_links_[from] = l;
}

void Network::clear_link_overrides() {
  pair_links_.clear();
  to_links_.clear();
  from_links_.clear();
}

const LinkParams& Network::link(std::size_t from, std::size_t to) const {
  if (!pair_links_.empty()) {
    auto it = pair_links_.find({from, to});
    if (it != pair_links_.end()) return it->second;
  }
  if (!to_links_.empty()) {
    auto it = to_links_.find(to);
    if (it != to_links_.end()) return it->second;
  }
  if (!from_links_.empty()) {
    auto it = from_links_.find(from);
    if (it != from_links_.end()) return it->second;
  }
  return config_.link;
}

void Network::partition(std::vector<std::vector<std::size_t>> groups, std::uint64_t from_ns, std::uint64_t until_ns) {
  Partition p;
  p.from_ns = from_ns;
  p.until_ns = until_ns;
  p.group_of.assign(members_.size(), -1);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (std::size_t i : groups[g]) {
      (void)member(i);
      if (p.group_of[i] != -1) {
        throw std::invalid_argument("tmc::sim::Network::partition: member " + std::to_string(i) +
                                    " is named in two groups");
      }
      p.group_of[i] = static_cast<int>(g);
    }
  }
  partitions_.push_back(std::move(p));
}

void Network::cut(std::size_t a, std::size_t b, std::uint64_t from_ns, std::uint64_t until_ns, bool one_way) {
  (void)member(a);
  (void)member(b);
  Partition p;
  p.from_ns = from_ns;
  p.until_ns = until_ns;
  p.cuts.emplace_back(a, b);
  if (!one_way) p.cuts.emplace_back(b, a);
  partitions_.push_back(std::move(p));
}

void Network::pause(std::size_t i, std::uint64_t from_ns, std::uint64_t for_ns) {
  (void)member(i);
  schedule(from_ns, [this, i, from_ns, for_ns] {
    Member& m = *members_[i];
    m.paused_until_ns = std::max(m.paused_until_ns, from_ns + for_ns);
  });
}

void Network::heal_all() {
  for (Partition& p : partitions_) {
    if (p.until_ns > now_ns_) p.until_ns = now_ns_;
  }
}

bool Network::blocked(std::size_t from, std::size_t to, std::uint64_t t_ns) const {
  for (const Partition& p : partitions_) {
    if (t_ns < p.from_ns || t_ns >= p.until_ns) continue;
    if (from < p.group_of.size() && to < p.group_of.size()) {
      const int gf = p.group_of[from];
      const int gt = p.group_of[to];
      if (gf >= 0 && gt >= 0 && gf != gt) return true;
    }
    for (const auto& c : p.cuts) {
      if (c.first == from && c.second == to) return true;
    }
  }
  return false;
}

// --- the event queue ------------------------------------------------------------------------

namespace {
// Heap order: the event with the smallest (time, order) is on top.
struct Later {
  template <class E>
  bool operator()(const E& a, const E& b) const noexcept {
    return a.time_ns != b.time_ns ? a.time_ns > b.time_ns : a.order > b.order;
  }
};
}  // namespace

void Network::push(QueuedEvent ev) {
  ev.order = next_order_++;
  queue_.push_back(std::move(ev));
  std::push_heap(queue_.begin(), queue_.end(), Later{});
}

bool Network::run_until(std::uint64_t t_ns) {
  std::uint64_t budget = config_.max_events_per_run;
  while (!queue_.empty() && queue_.front().time_ns <= t_ns) {
    if (budget-- == 0) return false;
    std::pop_heap(queue_.begin(), queue_.end(), Later{});
    QueuedEvent ev = std::move(queue_.back());
    queue_.pop_back();
    process(ev);
  }
  if (t_ns > now_ns_) now_ns_ = t_ns;
  return true;
}

bool Network::run_until_idle(std::uint64_t max_t_ns) {
  std::uint64_t budget = config_.max_events_per_run;
  while (!queue_.empty() && queue_.front().time_ns <= max_t_ns) {
    if (budget-- == 0) return false;
    std::pop_heap(queue_.begin(), queue_.end(), Later{});
    QueuedEvent ev = std::move(queue_.back());
    queue_.pop_back();
    process(ev);
  }
  if (queue_.empty()) return true;
  // Not idle: the virtual time still ran to the limit.
  if (max_t_ns > now_ns_) now_ns_ = max_t_ns;
  return false;
}

void Network::process(QueuedEvent& ev) {
  if (ev.time_ns > now_ns_) now_ns_ = ev.time_ns;
  if (ev.kind != EventKind::call && ev.member < members_.size() && members_[ev.member]->paused_until_ns > now_ns_) {
    // A paused member does nothing: its timer fires when it resumes, before it reads what
    // arrived meanwhile (an event loop runs due timers first), and its application's sends
    // wait as well.
    ev.time_ns = members_[ev.member]->paused_until_ns + (ev.kind == EventKind::timer ? 0 : 1);
    push(std::move(ev));
    return;
  }
  ++events_processed_;
  switch (ev.kind) {
    case EventKind::arrival:
      on_arrival(ev);
      break;
    case EventKind::timer: {
      Member& m = *members_[ev.member];
      // A timer of a previous incarnation, or one superseded by a re-arm, is stale.
      if (!m.up || ev.incarnation != m.incarnation || ev.deadline_ns != m.armed_ns) return;
      m.armed_ns = 0;
      if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " tick member " << ev.member << "\n";
      m.pipeline->tick(now_ns_);
      rearm(ev.member);
      break;
    }
    case EventKind::app_send:
      do_send(ev.member, ev.bytes.data(), ev.bytes.size(), ev.flags);
      break;
    case EventKind::call:
      if (ev.fn) ev.fn();
      break;
  }
}

void Network::rearm(std::size_t i) {
  Member& m = *members_[i];
  if (!m.up) return;
  const std::uint64_t d = m.pipeline->next_deadline_ns();
  if (d == 0) {
    m.armed_ns = 0;  // any queued timer event is now stale
    return;
  }
  if (d == m.armed_ns) return;
  m.armed_ns = d;
  QueuedEvent ev;
  ev.time_ns = d > now_ns_ ? d : now_ns_;
  ev.kind = EventKind::timer;
  ev.member = i;
  ev.incarnation = m.incarnation;
  ev.deadline_ns = d;
  push(std::move(ev));
}

// --- traffic --------------------------------------------------------------------------------

bool Network::send(std::size_t i, std::span<const std::uint8_t> bytes, std::uint16_t flags) {
  (void)member(i);
  return do_send(i, bytes.data(), bytes.size(), flags);
}

void Network::schedule_send(std::uint64_t t_ns, std::size_t i, std::vector<std::uint8_t> bytes, std::uint16_t flags) {
  (void)member(i);
  QueuedEvent ev;
  ev.time_ns = t_ns > now_ns_ ? t_ns : now_ns_;
  ev.kind = EventKind::app_send;
  ev.member = i;
  ev.flags = flags;
  ev.bytes = std::move(bytes);
  push(std::move(ev));
}

void Network::schedule(std::uint64_t t_ns, std::function<void()> fn) {
  QueuedEvent ev;
  ev.time_ns = t_ns > now_ns_ ? t_ns : now_ns_;
  ev.kind = EventKind::call;
  ev.fn = std::move(fn);
  push(std::move(ev));
}

void Network::inject(std::uint64_t t_ns, std::size_t from, std::size_t to, std::vector<std::uint8_t> bytes) {
  (void)member(from);  // both must exist
  (void)member(to);
  QueuedEvent ev;
  ev.time_ns = t_ns > now_ns_ ? t_ns : now_ns_;
  ev.kind = EventKind::arrival;
  ev.member = to;
  ev.from = from;
  ev.bytes = std::move(bytes);
  push(std::move(ev));
}

bool Network::send_with_lifetime(std::size_t i, std::span<const std::uint8_t> bytes, std::uint64_t lifetime_ns,
                                 std::uint16_t flags) {
  (void)member(i);
  return do_send(i, bytes.data(), bytes.size(), flags, lifetime_ns);
}

void Network::forget(std::size_t i, std::uint64_t token, ForgetScope scope) {
  Member& m = member(i);
  if (!m.up) return;
  if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " forget member " << i << " token " << token << "\n";
  m.pipeline->forget(token, scope, now_ns_);
  rearm(i);
}

bool Network::do_send(std::size_t i, const std::uint8_t* bytes, std::size_t n, std::uint16_t flags,
                      std::uint64_t lifetime_ns) {
  Member& m = *members_[i];
  SentMessage rec;
  rec.time_ns = now_ns_;
  rec.epoch = m.epoch;
  rec.flags = flags;
  const std::uint64_t lifetime = lifetime_ns != 0 ? lifetime_ns : m.plan.traits.lifetime_ns;
  rec.expires_ns = lifetime != 0 ? now_ns_ + lifetime : 0;
  rec.payload.assign(bytes, bytes + n);
  Packet* p = nullptr;
  if (m.up && n <= m.max_payload_bytes) {
    p = m.pool->alloc();
  } else if (m.up && n <= 0xFFFFFFFFu - kHeadroom - wire::kTrailerBytes && m.plan.traits.fragments()) {
    // A message larger than one datagram goes into a large buffer, as the runtime's shell
    // does; fragment.split cuts it into datagrams (or refuses it as too large).
    p = m.pool->alloc_large(static_cast<std::uint32_t>(n));
  }
  rec.accepted = p != nullptr;
  m.sent.push_back(std::move(rec));
  if (p == nullptr) {
    if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " send member " << i << " refused (" << n << " bytes)\n";
    return false;
  }
  p->reset_for_send(static_cast<std::uint32_t>(n));
  if (n != 0) std::memcpy(p->payload(), bytes, n);
  p->flags = flags;
  p->lifetime_ns = lifetime_ns;
  // The application's message id, reported back in delivery outcome events: the 1-based
  // index of the message in sent(member).
  p->token = m.sent.size();
  if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " send member " << i << " " << n << " bytes\n";
  m.pipeline->send(p, now_ns_);
  rearm(i);
  return true;
}

void Network::on_transmit(std::size_t i, Packet* p) noexcept {
  // Copying into the event queue may throw bad_alloc; the simulator is a test shell and
  // treats running out of memory as fatal, like the rest of the test process.
  const std::uint8_t* bytes = p->data();
  const std::size_t n = p->len;
  if (tap_) tap_(i, std::span<const std::uint8_t>(bytes, n));
  if (p->dst_ip != 0) {
    const std::uint32_t off = p->dst_ip - kFirstIp;
    if (p->dst_ip >= kFirstIp && off < members_.size()) {
      route(i, off, bytes, n);
    } else {
      ++unroutable_.unroutable;
      if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " tx " << i << " -> " << ip_string(p->dst_ip) << " unroutable\n";
    }
  } else {
    for (std::size_t j = 0; j < members_.size(); ++j) {
      if (j != i) route(i, j, bytes, n);
    }
  }
  p->release();
}

void Network::route(std::size_t from, std::size_t to, const std::uint8_t* bytes, std::size_t n) {
  Member& dst = *members_[to];
  LinkStats& st = dst.stats;
  ++st.copies;
  if (blocked(from, to, now_ns_)) {
    ++st.partitioned;
    if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " tx " << from << " -> " << to << " partitioned\n";
    return;
  }
  if (drop_filter_ && drop_filter_(from, to, std::span<const std::uint8_t>(bytes, n))) {
    ++st.lost;
    if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " tx " << from << " -> " << to << " dropped (filter)\n";
    return;
  }
  const LinkParams& l = link(from, to);
  if (rng_.chance(l.loss)) {
    ++st.lost;
    if (trace_ != nullptr) *trace_ << "t=" << now_ns_ << " tx " << from << " -> " << to << " lost\n";
    return;
  }
  const int copies = rng_.chance(l.duplicate) ? 2 : 1;
  if (copies == 2) ++st.duplicated;
  for (int c = 0; c < copies; ++c) {
    QueuedEvent ev;
    std::uint64_t delay = l.delay_ns + rng_.between(0, l.jitter_ns);
    if (rng_.chance(l.reorder)) {
      delay += rng_.between(1, std::max<std::uint64_t>(1, l.reorder_delay_ns));
      ++st.reordered;
    }
    ev.bytes.assign(bytes, bytes + n);
    if (n != 0 && rng_.chance(l.corrupt)) {
      // Flip k distinct bits, so the copy really differs from the original.
      const std::uint64_t nbits = std::uint64_t{n} * 8;
      const std::uint64_t k = std::min<std::uint64_t>(rng_.between(1, std::max<std::uint32_t>(1, l.corrupt_max_bits)), nbits);
      std::uint64_t chosen[16];
      std::uint64_t n_chosen = 0;
      while (n_chosen < k && n_chosen < 16) {
        const std::uint64_t bit = rng_.below(nbits);
        if (std::find(chosen, chosen + n_chosen, bit) != chosen + n_chosen) continue;
        chosen[n_chosen++] = bit;
        ev.bytes[bit / 8] = static_cast<std::uint8_t>(ev.bytes[bit / 8] ^ (1u << (bit % 8)));
      }
      ev.corrupted = true;
      ++st.corrupted;
    }
    ev.time_ns = now_ns_ + delay;
    ev.kind = EventKind::arrival;
    ev.member = to;
    ev.from = from;
    if (trace_ != nullptr) {
      *trace_ << "t=" << now_ns_ << " tx " << from << " -> " << to << " " << n << " bytes, arrives t=" << ev.time_ns
              << (ev.corrupted ? " corrupted" : "") << (c == 1 ? " (duplicate)" : "") << "\n";
    }
    push(std::move(ev));
  }
}

void Network::on_arrival(QueuedEvent& ev) {
  Member& m = *members_[ev.member];
  LinkStats& st = m.stats;
  if (!m.up) {
    ++st.to_down_member;
    return;
  }
  if (ev.bytes.size() > m.pool->buffer_bytes()) {
    ++st.oversize;
    return;
  }
  if (arrival_tap_) arrival_tap_(ev.member, std::span<const std::uint8_t>(ev.bytes.data(), ev.bytes.size()));
  Packet* p = m.pool->alloc();
  if (p == nullptr) {
    ++st.pool_exhausted;
    return;
  }
  p->reset_for_receive();
  if (!ev.bytes.empty()) std::memcpy(p->buf, ev.bytes.data(), ev.bytes.size());
  p->len = static_cast<std::uint32_t>(ev.bytes.size());
  p->src_ip = members_[ev.from]->ip;
  p->src_port = members_[ev.from]->port;
  ++st.arrived;
  if (ev.corrupted) ++st.corrupted_arrived;
  m.pipeline->receive(p, now_ns_);
  rearm(ev.member);
}

void Network::on_deliver(std::size_t i, Packet* p) noexcept {
  Member& m = *members_[i];
  Delivery d;
  const std::uint32_t off = p->src_ip - kFirstIp;
  d.from = (p->src_ip >= kFirstIp && off < members_.size()) ? off : kNoMember;
  d.sender = p->sender;
  d.epoch = p->epoch;
  d.seq = p->seq;
  d.flags = p->flags;
  d.time_ns = now_ns_;
  d.payload.assign(p->payload(), p->payload() + p->payload_len);
  if (trace_ != nullptr) {
    *trace_ << "t=" << now_ns_ << " deliver member " << i << " from " << static_cast<std::int64_t>(d.from)
            << " seq " << d.seq << " " << d.payload.size() << " bytes\n";
  }
  m.deliveries.push_back(std::move(d));
  p->release();
}

void Network::on_event(std::size_t i, const Event& e) noexcept {
  RecordedEvent r;
  r.time_ns = now_ns_;
  r.type = e.type;
  r.sender = e.sender;
  r.epoch = e.epoch;
  r.seq = e.seq;
  r.count = e.count;
  r.cause = e.cause;
  r.stage = std::string(e.stage);
  r.token = e.token;
  r.members = e.members;
  r.detail = std::string(e.detail);
  if (trace_ != nullptr) {
    *trace_ << "t=" << now_ns_ << " event member " << i << " " << event_type_name(e.type) << " sender " << e.sender
            << " seq " << e.seq << " count " << e.count << "\n";
  }
  members_[i]->events.push_back(std::move(r));
}

// --- observing --------------------------------------------------------------------------------

const std::vector<Delivery>& Network::deliveries(std::size_t i) const { return member(i).deliveries; }
const std::vector<RecordedEvent>& Network::events(std::size_t i) const { return member(i).events; }
const std::vector<SentMessage>& Network::sent(std::size_t i) const { return member(i).sent; }

CounterSnapshot Network::counters(std::size_t i) const {
  const Member& m = member(i);
  return m.up ? m.pipeline->counters() : CounterSnapshot{};
}

GaugeSnapshot Network::gauges(std::size_t i) const {
  const Member& m = member(i);
  return m.up ? m.pipeline->gauges() : GaugeSnapshot{};
}

const std::vector<CounterSnapshot>& Network::previous_counters(std::size_t i) const {
  return member(i).previous_counters;
}

std::size_t Network::held_packets(std::size_t i) const {
  const Member& m = member(i);
  return m.up ? m.pipeline->held_packets() : 0;
}

std::uint32_t Network::pool_in_use(std::size_t i) const {
  const Member& m = member(i);
  return m.up ? m.pool->in_use() : 0;
}

std::uint64_t Network::pool_large_bytes(std::size_t i) const {
  const Member& m = member(i);
  return m.up ? m.pool->large_bytes() : 0;
}

const LinkStats& Network::link_stats(std::size_t i) const { return member(i).stats; }

LinkStats Network::total_link_stats() const {
  LinkStats t = unroutable_;
  for (const auto& m : members_) t += m->stats;
  return t;
}

Pipeline* Network::pipeline(std::size_t i) { return member(i).pipeline.get(); }

std::uint64_t Network::fingerprint() const {
  Hasher h;
  h.u64(now_ns_);
  h.u64(members_.size());
  auto counters_into = [&h](const CounterSnapshot& c) {
    h.u64(c.names.size());
    for (std::size_t k = 0; k < c.names.size(); ++k) {
      h.str(c.names[k]);
      h.u64(c.values[k]);
    }
  };
  for (const auto& m : members_) {
    h.u64(m->sender_id);
    h.u64(m->epoch);
    h.u64(m->up ? 1 : 0);
    h.u64(m->deliveries.size());
    for (const Delivery& d : m->deliveries) {
      h.u64(d.from);
      h.u64(d.sender);
      h.u64(d.epoch);
      h.u64(d.seq);
      h.u64(d.flags);
      h.u64(d.time_ns);
      h.u64(d.payload.size());
      h.bytes(d.payload.data(), d.payload.size());
    }
    h.u64(m->events.size());
    for (const RecordedEvent& e : m->events) {
      h.u64(e.time_ns);
      h.u64(static_cast<std::uint64_t>(e.type));
      h.u64(e.sender);
      h.u64(e.epoch);
      h.u64(e.seq);
      h.u64(e.count);
      h.str(e.stage);
    }
    h.u64(m->sent.size());
    for (const SentMessage& s : m->sent) {
      h.u64(s.time_ns);
      h.u64(s.accepted ? 1 : 0);
      h.u64(s.payload.size());
    }
    for (const auto& c : m->previous_counters) counters_into(c);
    if (m->up) counters_into(m->pipeline->counters());
    const LinkStats& st = m->stats;
    for (std::uint64_t v : {st.copies, st.lost, st.partitioned, st.duplicated, st.reordered, st.corrupted, st.arrived,
                            st.corrupted_arrived, st.to_down_member, st.oversize, st.pool_exhausted}) {
      h.u64(v);
    }
  }
  h.u64(unroutable_.unroutable);
  return h.value();
}

}  // namespace tmc::sim

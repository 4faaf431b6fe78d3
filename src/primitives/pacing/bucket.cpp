// pacing.bucket — a token bucket that spreads sends over time (paper Table 3).
//
// Synopsis
//   Packets going down leave no faster than rate_bps on average, with bursts of at most
//   burst_bytes; a packet that does not fit waits in a FIFO inside the stage and is
//   released by the stage's timer, armed for the moment the head packet fits.
// Params
//   rate_bps (int, 1000000000)     long-run rate, in bits per second of datagram bytes (> 0).
//                                  The compiler always passes the manifest's rate; the default
//                                  exists because every stage must configure from defaults.
//   burst_bytes (int, 65536)       bucket depth: bytes that may leave back to back
// Counters
//   pacing.bucket_passed, pacing.bucket_delayed, pacing.bucket_released,
//   pacing.bucket_oversize, pacing.bucket_stop_flushed
// Wire
//   None.
// Notes
//   Tokens are kept in units of 1/8e9 byte, so that refilling for `elapsed_ns` at
//   `rate_bps` is the exact integer product elapsed_ns * rate_bps (no rounding drift).
//   The cost of a packet is its datagram bytes as seen here (header included when the
//   packet is not sealed yet; a checksum trailer or a batch wrapper added below is not
//   counted). A packet larger than the bucket leaves when the bucket is full and puts the
//   bucket in debt, so the long-run rate still holds. Every kind is paced (acks and
//   heartbeats take bandwidth too) and the FIFO keeps the order in which packets came down.
//   The FIFO is an intrusive list through Packet::next, so holding costs no allocation; its
//   length is bounded by the packet pool (backpressure), never by dropping. The receive path
//   is untouched. On on_stop the queue is passed down at once: the pipeline is retiring and
//   holding packets past its life would lose them.
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "tmc/stage.hpp"

namespace tmc {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_BUCKET_COUNTERS(X, P)                                                                                   \
  X(P, passed, "packets that found enough tokens and passed at once")                                               \
  X(P, delayed, "packets queued to wait for tokens")                                                                \
  X(P, released, "queued packets released by the timer")                                                            \
  X(P, oversize, "packets larger than the bucket (sent from a full bucket, in debt)")                               \
  X(P, stop_flushed, "queued packets passed down unpaced when the pipeline stopped")
TMC_STAGE_COUNTERS("pacing.bucket_", TMC_BUCKET_COUNTERS);

// Gauges, declared once likewise (read_gauges() fills them in this order).
#define TMC_BUCKET_GAUGES(X, P)                                                                                     \
  X(P, tokens, "bytes of tokens in the bucket at the stage's last input (negative: in debt after an oversize packet)") \
  X(P, queued_packets, "packets waiting for tokens")
TMC_STAGE_GAUGES("pacing.bucket_", TMC_BUCKET_GAUGES);

// One byte of tokens in the bucket's units (bits per byte times nanoseconds per second).
constexpr std::int64_t kUnitsPerByte = 8'000'000'000;
// Limits that keep every product below in range of int64.
constexpr std::int64_t kMaxRateBps = 1'000'000'000'000;  // 1 Tbit/s
constexpr std::int64_t kMaxBurstBytes = std::int64_t{1} << 29;

class BucketStage final : public Stage {
 public:
  ~BucketStage() override {
    // Packets still queued belong to this stage; give them back to their pool.
    queue_.release_all();
  }

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)env;
    (void)errors;  // the registry checked every range
    rate_bps_ = params.integer("rate_bps");
    cap_units_ = params.integer("burst_bytes") * kUnitsPerByte;
    tokens_ = cap_units_;  // a fresh bucket is full: the first burst leaves at once
    return true;
  }

  void on_start(StageIo& io) noexcept override {
    last_ns_ = io.now_ns();
    clock_set_ = true;
  }

  void on_send(Packet* p, StageIo& io) noexcept override {
    refill(io.now_ns());
    if (queue_.empty() && fits(*p)) {
      take(*p, io);
      io.count(passed);
      io.down(p);
      return;
    }
    // Behind a queue, or no tokens: wait in order.
    queue_.push(p);
    io.count(delayed);
    if (queue_.front() == p) arm(io);
  }

  void on_tick(StageIo& io) noexcept override {
    refill(io.now_ns());
    while (!queue_.empty() && fits(*queue_.front())) {
      Packet* p = pop();
      take(*p, io);
      io.count(released);
      io.down(p);
    }
    if (!queue_.empty()) arm(io);
  }

  void on_stop(StageIo& io) noexcept override {
    io.cancel_timer();
    while (!queue_.empty()) {
      Packet* p = pop();
      io.count(stop_flushed);
      io.down(p);
    }
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override { return queue_.size(); }
  void read_gauges(std::span<double> out) const noexcept override {
    out[Gauge::tokens] = static_cast<double>(tokens_) / static_cast<double>(kUnitsPerByte);
    out[Gauge::queued_packets] = static_cast<double>(queue_.size());
  }

 private:
  static std::int64_t cost_bytes(const Packet& p) noexcept {
    return std::int64_t{p.len} + (p.sealed ? 0 : static_cast<std::int64_t>(wire::kBaseHeaderBytes));
  }

  // A packet no larger than the bucket needs its full cost in tokens; a larger one needs a
  // full bucket (and leaves it in debt).
  [[nodiscard]] std::int64_t need_units(const Packet& p) const noexcept {
    const std::int64_t c = cost_bytes(p) * kUnitsPerByte;
    return c < cap_units_ ? c : cap_units_;
  }

  [[nodiscard]] bool fits(const Packet& p) const noexcept { return tokens_ >= need_units(p); }

  void take(const Packet& p, StageIo& io) noexcept {
    const std::int64_t c = cost_bytes(p) * kUnitsPerByte;
    if (c > cap_units_) io.count(oversize);
    tokens_ -= c;
  }

  void refill(std::uint64_t now_ns) noexcept {
    if (!clock_set_) {
      // Unit tests may drive the stage without on_start: the first input starts the clock.
      last_ns_ = now_ns;
      clock_set_ = true;
      return;
    }
    if (now_ns <= last_ns_) return;
    const std::uint64_t elapsed = now_ns - last_ns_;
    last_ns_ = now_ns;
    // Fill to the top without forming elapsed * rate when that could overflow: the time
    // to fill the bucket from its current level bounds the product.
    const auto missing = static_cast<std::uint64_t>(cap_units_ - tokens_);  // tokens_ <= cap_units_
    const auto rate = static_cast<std::uint64_t>(rate_bps_);
    if (elapsed >= (missing + rate - 1) / rate) {
      tokens_ = cap_units_;
    } else {
      tokens_ += static_cast<std::int64_t>(elapsed * rate);
    }
  }

  // Wake exactly when the head packet fits: the first instant at which the tokens earned
  // since last_ns_ cover what is missing.
  void arm(StageIo& io) noexcept {
    const std::int64_t missing = need_units(*queue_.front()) - tokens_;  // > 0: the head does not fit
    const auto rate = static_cast<std::uint64_t>(rate_bps_);
    const std::uint64_t wait_ns = (static_cast<std::uint64_t>(missing) + rate - 1) / rate;
    io.arm_timer(last_ns_ + wait_ns);
  }

  Packet* pop() noexcept { return queue_.pop(); }

  std::int64_t rate_bps_ = 1;
  std::int64_t cap_units_ = 0;
  std::int64_t tokens_ = 0;  ///< may be negative after an oversize packet (debt)
  std::uint64_t last_ns_ = 0;
  bool clock_set_ = false;
  PacketFifo queue_;  ///< packets waiting, oldest first
};

}  // namespace

void register_pacing_bucket(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "pacing.bucket",
      .synopsis = "Pacing: a token bucket (rate, burst) that spreads sends; packets that do not fit wait in order.",
      .notes = "Every packet going down costs its datagram bytes (base header included; a checksum trailer or "
               "batch wrapper added below is not counted). A fresh bucket holds `burst_bytes`; it refills at "
               "`rate_bps` bits per second of datagram bytes, in exact integer arithmetic. A packet that does "
               "not fit, or that arrives while others wait, is queued in a FIFO inside the stage (an intrusive "
               "list: no allocation) and released by the stage's timer, armed for the instant the head packet "
               "fits, so packets leave in the order they came down and never earlier than the rate allows. A "
               "packet larger than the bucket leaves when the bucket is full and leaves it in debt. All kinds "
               "are paced. Nothing is dropped: the queue is bounded by the packet pool (backpressure); "
               "`held_packets` reports its length. On stop the queue is passed down at once. The receive path "
               "is untouched. No wire bytes.",
      .params = {{.name = "rate_bps",
                  .type = ParamType::integer,
                  .default_value = "1000000000",
                  .doc = "Long-run rate in bits per second of datagram bytes (1..10^12); the compiler passes the "
                         "manifest's rate.",
                  .min = 1,
                  .max = kMaxRateBps},
                 {.name = "burst_bytes",
                  .type = ParamType::integer,
                  .default_value = "65536",
                  .doc = "Bucket depth: bytes that may leave back to back after an idle period.",
                  .min = 1,
                  .max = kMaxBurstBytes}},
      .counters = counter_list(kCounters),
      .gauges = gauge_list(kGauges),
      .factory = [] { return std::make_unique<BucketStage>(); },
      .serves = "pacing",
  });
}

}  // namespace tmc

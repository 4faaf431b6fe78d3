// faults.inject — seeded fault injection: loss, duplication, reordering, delay, corruption.
//
// Synopsis
//   Perturbs the packets that cross it, deterministically from its seed, on the send path,
//   the receive path or both. Works the same in the simulator and on real sockets.
// Params
//   loss, duplicate, reorder, corrupt (real, 0)  probability per packet, 0..1
//   delay_us (int, 0)                            fixed extra delay for every packet
//   seed (int, 1)                                XORed with the endpoint's StageEnv::seed
//   direction (string, "send")                   "send" | "receive" | "both"
// Counters
//   faults.lost, faults.duplicated, faults.reordered, faults.delayed, faults.corrupted,
//   faults.overflow, faults.clone_failed
// Wire
//   None.
// Notes
//   The decisions for one packet are drawn in a fixed order (loss, corrupt, duplicate,
//   then reorder for each copy) from a private xoshiro256** generator, and a draw is made
//   only for a fault whose probability is non-zero; the same seed and the same input give
//   the same faults. A reordered packet is held until the next packet has passed, or for
//   kReorderHoldNs at most, so it is never stuck. Delayed packets wait in a FIFO released
//   by the timer. At most kMaxHeld packets are held in all; beyond that packets pass
//   undelayed and unreordered (faults.overflow). Corruption flips one bit of the datagram:
//   on send the packet is sealed first; on receive the packet is decoded again afterwards
//   (a corrupted header is then dropped as malformed, as it would be off the wire). Place
//   the stage nearest the network so checksums cover what it corrupts.
#include <memory>
#include <vector>

#include "primitives/common/stage_timer.hpp"
#include "tmc/rng.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_INJECT_COUNTERS(X, P)                                                                                   \
  X(P, lost, "packets dropped (drops.injected)")                                                                    \
  X(P, duplicated, "packets passed twice")                                                                          \
  X(P, reordered, "packets held back behind the next one")                                                          \
  X(P, delayed, "packets delayed by delay_us")                                                                      \
  X(P, corrupted, "packets with one bit flipped")                                                                   \
  X(P, overflow, "packets passed without delay or reordering: too many held")                                       \
  X(P, clone_failed, "duplications skipped: packet pool exhausted")
TMC_STAGE_COUNTERS("faults.", TMC_INJECT_COUNTERS);

constexpr std::uint32_t kMaxHeld = 4096;
constexpr std::uint64_t kReorderHoldNs = 1'000'000;  // 1 ms

// A FIFO of held packets with their release times, preallocated at configure.
class HeldQueue {
 public:
  void reserve(std::uint32_t cap) {
    items_.reset(new Item[cap]);
    cap_ = cap;
  }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] bool full() const noexcept { return size_ == cap_; }
  [[nodiscard]] std::uint32_t size() const noexcept { return size_; }
  [[nodiscard]] std::uint64_t head_due_ns() const noexcept { return items_[head_].due_ns; }
  void push(Packet* p, std::uint64_t due_ns) noexcept {
    items_[(head_ + size_) % cap_] = Item{p, due_ns};
    ++size_;
  }
  Packet* pop() noexcept {
    Packet* p = items_[head_].p;
    head_ = (head_ + 1) % cap_;
    --size_;
    return p;
  }

 private:
  struct Item {
    Packet* p = nullptr;
    std::uint64_t due_ns = 0;
  };
  std::unique_ptr<Item[]> items_;
  std::uint32_t cap_ = 0;
  std::uint32_t head_ = 0;
  std::uint32_t size_ = 0;
};

enum class Path : std::uint8_t { send, receive };

class FaultsStage final : public Stage {
 public:
  ~FaultsStage() override {
    for (Lane& l : lanes_) {
      while (!l.reorder.empty()) l.reorder.pop()->release();
      while (!l.delay.empty()) l.delay.pop()->release();
    }
  }

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)errors;  // the registry checked every range and word
    loss_ = params.real("loss");
    duplicate_ = params.real("duplicate");
    reorder_ = params.real("reorder");
    corrupt_ = params.real("corrupt");
    delay_ns_ = static_cast<std::uint64_t>(params.integer("delay_us")) * 1000;
    const std::string& direction = params.text("direction");
    on_send_path_ = direction == "send" || direction == "both";
    on_receive_path_ = direction == "receive" || direction == "both";
    rng_.reseed(static_cast<std::uint64_t>(params.integer("seed")) ^ env.seed);
    // Queues exist only for the lanes and faults that need them.
    for (int i = 0; i < 2; ++i) {
      const bool active = i == 0 ? on_send_path_ : on_receive_path_;
      if (!active) continue;
      if (reorder_ > 0.0) lanes_[i].reorder.reserve(kMaxHeld);
      if (delay_ns_ > 0) lanes_[i].delay.reserve(kMaxHeld);
    }
    return true;
  }

  void on_send(Packet* p, StageIo& io) noexcept override {
    if (on_send_path_) {
      inject(Path::send, p, io);
    } else {
      io.down(p);
    }
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    if (on_receive_path_) {
      inject(Path::receive, p, io);
    } else {
      io.up(p);
    }
  }

  void on_tick(StageIo& io) noexcept override {
    timer_.fired();
    const std::uint64_t now = io.now_ns();
    for (int i = 0; i < 2; ++i) {
      const Path path = i == 0 ? Path::send : Path::receive;
      Lane& l = lanes_[i];
      while (!l.reorder.empty() && l.reorder.head_due_ns() <= now) {
        --held_;
        forward(path, l.reorder.pop(), io);
      }
      while (!l.delay.empty() && l.delay.head_due_ns() <= now) {
        --held_;
        pass(path, l.delay.pop(), io);
      }
    }
    rearm(io);
  }

  [[nodiscard]] std::size_t held_packets() const noexcept override { return held_; }

 private:
  struct Lane {
    HeldQueue reorder;
    HeldQueue delay;
  };

  bool roll(double probability) noexcept { return probability > 0.0 && rng_.real() < probability; }

  void inject(Path path, Packet* p, StageIo& io) noexcept {
    if (roll(loss_)) {
      io.count(lost);
      io.drop(p, DropReason::injected);
      return;
    }
    if (roll(corrupt_)) {
      io.count(corrupted);
      if (!corrupt(path, p)) {
        io.drop(p, DropReason::malformed);
        return;
      }
    }
    Packet* copy = nullptr;
    if (roll(duplicate_)) {
      copy = io.clone(*p);
      io.count(copy != nullptr ? duplicated : clone_failed);
    }
    emit(path, p, io);
    if (copy != nullptr) emit(path, copy, io);
  }

  // Flip one bit of the datagram. Returns false when the packet no longer decodes.
  bool corrupt(Path path, Packet* p) noexcept {
    if (path == Path::send) p->seal();
    if (p->len == 0) return true;
    const auto bit = static_cast<std::uint32_t>(rng_.below(p->len * 8u));
    p->data()[bit / 8] = static_cast<std::uint8_t>(p->data()[bit / 8] ^ (1u << (bit % 8)));
    return path == Path::send || wire::decode(*p) == wire::DecodeError::none;
  }

  void emit(Path path, Packet* p, StageIo& io) noexcept {
    Lane& l = lane(path);
    if (roll(reorder_)) {
      if (held_ < kMaxHeld && !l.reorder.full()) {
        const bool was_empty = l.reorder.empty();
        l.reorder.push(p, io.now_ns() + kReorderHoldNs);
        ++held_;
        io.count(reordered);
        if (was_empty) arm(l.reorder.head_due_ns(), io);
        return;
      }
      io.count(overflow);
    }
    forward(path, p, io);
    // The packets held for reordering go out after this one.
    while (!l.reorder.empty()) {
      --held_;
      forward(path, l.reorder.pop(), io);
    }
  }

  void forward(Path path, Packet* p, StageIo& io) noexcept {
    if (delay_ns_ > 0) {
      Lane& l = lane(path);
      if (held_ < kMaxHeld && !l.delay.full()) {
        const bool was_empty = l.delay.empty();
        l.delay.push(p, io.now_ns() + delay_ns_);
        ++held_;
        io.count(delayed);
        if (was_empty) arm(l.delay.head_due_ns(), io);
        return;
      }
      io.count(overflow);
    }
    pass(path, p, io);
  }

  static void pass(Path path, Packet* p, StageIo& io) noexcept {
    if (path == Path::send) {
      io.down(p);
    } else {
      io.up(p);
    }
  }

  Lane& lane(Path path) noexcept { return lanes_[path == Path::send ? 0 : 1]; }

  void arm(std::uint64_t deadline_ns, StageIo& io) noexcept { timer_.arm_by(io, deadline_ns); }

  void rearm(StageIo& io) noexcept {
    for (Lane& l : lanes_) {
      if (!l.reorder.empty()) arm(l.reorder.head_due_ns(), io);
      if (!l.delay.empty()) arm(l.delay.head_due_ns(), io);
    }
  }

  double loss_ = 0, duplicate_ = 0, reorder_ = 0, corrupt_ = 0;
  std::uint64_t delay_ns_ = 0;
  bool on_send_path_ = false;
  bool on_receive_path_ = false;
  Rng rng_;
  Lane lanes_[2];
  std::uint32_t held_ = 0;
  detail::StageTimer timer_;
};

constexpr std::string_view kDirections[] = {"send", "receive", "both"};

}  // namespace

void register_faults_inject(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "faults.inject",
      .synopsis = "Fault injection: seeded loss, duplication, reordering, delay and corruption, per instance.",
      .notes = "Deterministic: decisions come from a private xoshiro256** generator seeded with `seed` XOR the "
               "endpoint's seed, drawn in a fixed order (loss, corrupt, duplicate, then reorder for each copy) "
               "and only for non-zero probabilities, so a seed replays exactly in the simulator. A reordered "
               "packet is held until the next one has passed, or 1 ms at most. Delay holds every packet "
               "`delay_us` in a FIFO released by the stage's timer. At most 4096 packets are held in all; "
               "beyond that packets pass undelayed (`faults.overflow`). Corruption flips one random bit of the "
               "datagram (sealed first on send; decoded again on receive, so a corrupted header is dropped as "
               "malformed). Place it nearest the network so that checksums cover what it corrupts. No wire "
               "bytes of its own.",
      .params = {{.name = "loss",
                  .type = ParamType::real,
                  .default_value = "0",
                  .doc = "Probability that a packet is dropped (0..1).",
                  .lo = 0.0,
                  .hi = 1.0},
                 {.name = "duplicate",
                  .type = ParamType::real,
                  .default_value = "0",
                  .doc = "Probability that a packet is passed twice (0..1).",
                  .lo = 0.0,
                  .hi = 1.0},
                 {.name = "reorder",
                  .type = ParamType::real,
                  .default_value = "0",
                  .doc = "Probability that a packet is held back behind the next one (0..1).",
                  .lo = 0.0,
                  .hi = 1.0},
                 {.name = "corrupt",
                  .type = ParamType::real,
                  .default_value = "0",
                  .doc = "Probability that one bit of a packet is flipped (0..1).",
                  .lo = 0.0,
                  .hi = 1.0},
                 {.name = "delay_us",
                  .type = ParamType::integer,
                  .default_value = "0",
                  .doc = "Extra delay for every packet, in microseconds.",
                  .min = 0,
                  .max = 60'000'000},
                 {"seed", ParamType::integer, "1", "Seed of this instance, XORed with the endpoint's seed."},
                 {.name = "direction",
                  .type = ParamType::string,
                  .default_value = "send",
                  .doc = "Which path to perturb: send, receive or both.",
                  .one_of = kDirections}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<FaultsStage>(); },
      .serves = "faults",
  });
}

}  // namespace tmc

// flow.credit — credit-based flow control (paper Table 3). Its state is visible through its
// gauges (read_gauges, flow.*); the behaviour is documented at the top of credit.cpp and in
// its StageInfo.
#pragma once

#include <cstdint>
#include <vector>

#include "primitives/common/stage_timer.hpp"
#include "tmc/stage.hpp"

namespace tmc::detail {

class FlowCreditStage final : public Stage {
 public:
  FlowCreditStage() = default;
  ~FlowCreditStage() override;
  FlowCreditStage(const FlowCreditStage&) = delete;
  FlowCreditStage& operator=(const FlowCreditStage&) = delete;

  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override;
  void on_send(Packet* p, StageIo& io) noexcept override;
  void on_receive(Packet* p, StageIo& io) noexcept override;
  void on_tick(StageIo& io) noexcept override;
  void on_stop(StageIo& io) noexcept override;
  void on_forget(std::uint64_t token, ForgetScope scope, StageIo& io) noexcept override;
  [[nodiscard]] std::size_t held_packets() const noexcept override { return queue_.size(); }
  void read_gauges(std::span<double> out) const noexcept override;

 private:
  /// Sender side: bytes sent but not yet advertised as consumed by the receiver in `slot`,
  /// relative to its baseline (what flow control compares with the window).
  [[nodiscard]] std::int64_t unconsumed_bytes(int slot) const noexcept;
  /// Sender side: how many slots are ignored because they were ejected as slow.
  [[nodiscard]] std::size_t ejected() const noexcept;
  /// Cold: per-receiver state for every slot of the view.
  void fit_view(const Group& g);

  // --- receiver side: what we consumed of each sender --------------------------------------
  static constexpr std::uint64_t kDedupBits = 4096;
  static constexpr std::size_t kMaxSources = 64;
  struct Source {
    bool used = false;
    std::uint32_t sender = 0;
    std::uint32_t epoch = 0;
    std::uint64_t consumed = 0;
    std::uint64_t cum = 0;  ///< every rseq <= cum was counted (or is too old to count)
    std::uint64_t bits[kDedupBits / 64] = {};  ///< rseq in (cum, cum + kDedupBits] counted
    std::uint64_t adv_consumed = 0;  ///< last value advertised
    std::uint32_t adv_window = 0;    ///< last window advertised (it moves with the load hint)
    std::uint32_t adv_repeats = 0;   ///< how often that value went out
    std::uint64_t last_ns = 0;       ///< last activity, for eviction
  };

  // --- sender side: what each receiver (Group slot) has consumed of ours -------------------
  struct Peer {
    std::uint32_t epoch = 0;
    bool in_set = false;    ///< in the policy's receiver set at the last look
    bool has_adv = false;
    std::uint64_t consumed = 0;
    std::uint64_t window = 0;
    std::uint64_t base_sent = 0;      ///< sent_ when it (re)entered the set
    std::uint64_t base_consumed = 0;  ///< its consumed_bytes then
    std::uint64_t blocked_since_ns = 0;  ///< 0: not blocking the sender
    bool reported = false;  ///< slow_member raised in the current episode
    bool ejected = false;   ///< eject_slow: ignored for the rest of this epoch
    // Released messages (see forgive_released()): what this receiver acknowledged of ours,
    // and how many bytes were forgiven it because it never got them.
    std::uint64_t base_rseq = 0;  ///< highest rseq passed down when it (re)entered the set
    std::uint64_t acked = 0;      ///< its highest cumulative ack (0: none)
    std::uint64_t sack = 0;       ///< with that ack's SACK bitmap (AckBody)
    std::uint64_t forgiven = 0;   ///< bytes forgiven since its baseline, not yet taken back
  };
  /// Sender side: a reliable data packet passed down (first transmission), by rseq, for as
  /// long as it can still be released (kSentRing rseqs).
  struct SentRec {
    std::uint64_t rseq = 0;
    std::uint64_t token = 0;
    std::uint64_t expires_ns = 0;
    std::uint32_t bytes = 0;
    bool forgotten = false;
  };
  static constexpr std::size_t kSentRing = 4096;

  Source* source(std::uint32_t sender, std::uint32_t epoch, bool create, std::uint64_t now_ns,
                 bool* evicted = nullptr) noexcept;
  static bool mark(Source& s, std::uint64_t rseq) noexcept;
  void advertise_standalone(Source& s, StageIo& io) noexcept;
  [[nodiscard]] std::int64_t credit(const Peer& pe) const noexcept;
  /// The window this receiver advertises now: window_bytes, shrunk by the load hint.
  [[nodiscard]] std::uint32_t advertised_window(const StageIo& io) const noexcept;
  [[nodiscard]] bool fits(const Peer& pe, std::uint64_t bytes) const noexcept;
  /// The policy set, rebuilt only when the view changed or a receiver was ejected.
  const MemberSet& policy_set(StageIo& io) noexcept;
  void rebuild_set(const Group& g) noexcept;
  [[nodiscard]] bool allowed(const MemberSet& set, std::uint64_t bytes) noexcept;
  /// A receiver's credit as the bounds see it: its credit, or far below zero while it
  /// advertises window 0 (it fits nothing then).
  [[nodiscard]] std::int64_t bound_credit(const Peer& pe) const noexcept;
  /// Cold (O(set)): the smallest and the policy's k-th largest credit in `set` now, and
  /// whether some receiver in it is marked behind.
  void refresh_bounds(const MemberSet& set) noexcept;
  /// A receiver's credit may have dropped by more than what was sent since (a smaller
  /// window, a forgiven message taken back, a reset): the bounds must be taken again.
  void credit_dropped() noexcept { bounds_valid_ = false; }
  void take_advert(const Packet& p, const std::uint8_t* body, std::uint8_t len, StageIo& io) noexcept;
  void release(StageIo& io) noexcept;
  void watch_slow(const MemberSet& set, std::uint64_t bytes, StageIo& io) noexcept;
  /// Whether some receiver in `set` started or stopped being behind (more than its window
  /// unconsumed) since watch_slow() last looked: the fast path's cheap test.
  [[nodiscard]] bool behind_changed(const MemberSet& set) noexcept;
  void schedule(StageIo& io) noexcept;
  void refresh_adverts(StageIo& io) noexcept;
  Packet* pop() noexcept;
  void drop_expired(StageIo& io) noexcept;
  /// Sender: charge a reliable data packet passing down for the first time.
  void charge(const Packet& p, std::uint64_t rseq) noexcept;
  /// Sender: reliability's trailing edge passed `edge` (every rseq <= it is settled): each
  /// receiver in the set that never acknowledged a released (forgotten or expired) one of
  /// them will never consume it, so its bytes stop counting against that receiver.
  void forgive_released(std::uint64_t edge, StageIo& io) noexcept;
  /// Sender: the receivers in the set that never acknowledged `rec` no longer owe its bytes.
  void forgive(const SentRec& rec) noexcept;
  /// Sender: an ack a receiver sent us, passing up.
  void take_ack(const Packet& p, StageIo& io) noexcept;
  /// Sender: reliability's announcement of its trailing edge (a control packet carrying an
  /// ack addressed to ourselves), passing down.
  void learn_edge(const Packet& p, StageIo& io) noexcept;

  StageEnv env_{};
  enum class Policy : std::uint8_t { min, max, quorum } policy_ = Policy::min;
  std::uint64_t window_ = 4u << 20;
  std::uint64_t slow_ns_ = 1'000'000'000;
  bool eject_slow_ = false;
  bool load_hints_ = true;
  std::uint64_t update_every_ = 1u << 20;
  std::uint64_t refresh_ns_ = 50'000'000;
  std::uint64_t recheck_ns_ = 5'000'000;

  std::vector<Source> sources_;  ///< kMaxSources, allocated at configure
  std::uint64_t next_refresh_ns_ = 0;  ///< 0: no advertisement pending

  std::vector<Peer> peers_;  ///< by Group slot; grows with the view (fit_view(), cold)
  MemberSet set_;            ///< the policy set (policy_set()), for view set_view_
  std::uint64_t set_view_ = 0;
  bool set_valid_ = false;   ///< false: rebuild at the next look (new pipeline, ejection)
  // Lower bounds that make the per-send checks O(1) while no receiver is behind. Every
  // receiver's credit drops by exactly what is sent, and otherwise only rises (it
  // consumed more, a released message was forgiven) unless credit_dropped() says so; so
  // a bound taken when sent_ was bounds_sent_ holds, less (sent_ - bounds_sent_), until
  // then. min_bound_: the smallest credit in the set; kth_bound_: the k-th largest, where
  // the policy needs k receivers to fit (min: the smallest, max: the largest).
  bool bounds_valid_ = false;
  bool any_behind_ = true;   ///< some receiver in the set had blocked_since_ns set
  std::int64_t min_bound_ = 0;
  std::int64_t kth_bound_ = 0;
  std::uint64_t bounds_sent_ = 0;
  mutable std::vector<std::int64_t> credit_scratch_;  ///< read_gauges(): one per peer
  std::vector<std::int64_t> bound_scratch_;           ///< refresh_bounds(): one per peer
  std::uint64_t sent_ = 0;
  std::uint64_t highest_rseq_ = 0;    ///< highest rseq of data that came down
  std::uint64_t highest_passed_ = 0;  ///< highest rseq of data passed down (queue is in rseq order)
  PacketFifo queue_;  ///< packets waiting, oldest first
  std::vector<SentRec> sent_ring_;    ///< kSentRing, allocated at the first reliable packet
  std::uint64_t edge_ = 0;            ///< highest settled rseq forgive_released() looked at
  std::uint64_t last_released_ = 0;   ///< highest forgotten rseq in sent_ring_
  std::uint64_t last_expiring_ = 0;   ///< highest rseq passed with a lifetime
  StageTimer timer_;  ///< armed at the earliest check (disarmed: nothing waits)
};

}  // namespace tmc::detail

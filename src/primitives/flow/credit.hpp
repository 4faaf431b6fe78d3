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
  };

  Source* source(std::uint32_t sender, std::uint32_t epoch, bool create, std::uint64_t now_ns,
                 bool* evicted = nullptr) noexcept;
  static bool mark(Source& s, std::uint64_t rseq) noexcept;
  void advertise_standalone(Source& s, StageIo& io) noexcept;
  [[nodiscard]] std::int64_t credit(const Peer& pe) const noexcept;
  /// The window this receiver advertises now: window_bytes, shrunk by the load hint.
  [[nodiscard]] std::uint32_t advertised_window(const StageIo& io) const noexcept;
  [[nodiscard]] bool fits(const Peer& pe, std::uint64_t bytes) const noexcept;
  const MemberSet& policy_set(StageIo& io) noexcept;
  [[nodiscard]] bool allowed(const MemberSet& set, std::uint64_t bytes) const noexcept;
  void take_advert(const Packet& p, const std::uint8_t* body, std::uint8_t len, StageIo& io) noexcept;
  void release(StageIo& io) noexcept;
  void watch_slow(const MemberSet& set, std::uint64_t bytes, StageIo& io) noexcept;
  /// Whether some receiver in `set` started or stopped being behind (more than its window
  /// unconsumed) since watch_slow() last looked: the fast path's cheap test.
  [[nodiscard]] bool behind_changed(const MemberSet& set) const noexcept;
  void schedule(StageIo& io) noexcept;
  void refresh_adverts(StageIo& io) noexcept;
  Packet* pop() noexcept;
  void drop_expired(StageIo& io) noexcept;

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
  MemberSet set_;            ///< the policy set of the last look (policy_set())
  mutable std::vector<std::int64_t> credit_scratch_;  ///< read_gauges(): one per peer
  std::uint64_t sent_ = 0;
  std::uint64_t highest_rseq_ = 0;    ///< highest rseq of data that came down
  std::uint64_t highest_passed_ = 0;  ///< highest rseq of data passed down (queue is in rseq order)
  PacketFifo queue_;  ///< packets waiting, oldest first
  StageTimer timer_;  ///< armed at the earliest check (disarmed: nothing waits)
};

}  // namespace tmc::detail

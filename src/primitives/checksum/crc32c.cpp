// checksum.crc32c — end-to-end error checking with a CRC32C trailer.
//
// Synopsis
//   Appends a CRC32C of the whole datagram on send; verifies and strips it on receive.
// Params
//   require (bool, false)  drop received packets that carry no CRC. Off by default because
//                          a sender whose NIC checks integrity legitimately sends none.
// Counters
//   checksum.sealed      datagrams given a trailer on send
//   checksum.no_room     datagrams dropped on send because the buffer had no room for it
//   checksum.verified    received datagrams whose trailer matched
//   checksum.mismatch    received datagrams dropped for a wrong trailer (drops.checksum)
//   checksum.missing     received datagrams dropped for lacking one (drops.missing_checksum)
//   checksum.unchecked   received datagrams without a trailer passed up (require: false)
// Wire
//   Sets wire::kFlagCrc in the base header and appends 4 bytes: the big-endian CRC32C of
//   every byte before them (header, extensions, payload). No extension.
// Notes
//   The stage seals the packet itself because the CRC must cover the final header. When
//   the plan places error checking on the NIC, this stage is absent and the channel pays
//   nothing for it; UDP checksums stay on. A packet sealed by a stage above this one has
//   its header flags patched in place. Received packets keep kFlagCrc in `flags` after the
//   trailer is stripped (it records that the datagram was verified).
#include <vector>

#include "primitives/checksum/crc32c_impl.hpp"
#include "tmc/stage.hpp"

namespace tmc {
namespace {

// Counters, declared once: the enum and the names (P #id) come from this list.
#define TMC_CRC32C_COUNTERS(X, P)                                                                                   \
  X(P, sealed, "datagrams given a CRC trailer on send")                                                             \
  X(P, no_room, "datagrams dropped on send: no buffer room for the trailer")                                        \
  X(P, verified, "received datagrams whose CRC matched")                                                            \
  X(P, mismatch, "received datagrams dropped for a wrong CRC")                                                      \
  X(P, missing, "received datagrams dropped for lacking a CRC (require: true)")                                     \
  X(P, unchecked, "received datagrams without a CRC passed up (require: false)")
TMC_STAGE_COUNTERS("checksum.", TMC_CRC32C_COUNTERS);

class Crc32cStage final : public Stage {
 public:
  bool configure(const Params& params, const StageEnv& env, std::vector<std::string>& errors) override {
    (void)env;
    (void)errors;
    require_ = params.boolean("require");
    return true;
  }

  void on_send(Packet* p, StageIo& io) noexcept override {
    p->flags = static_cast<std::uint16_t>(p->flags | wire::kFlagCrc);
    if (p->sealed) {
      // Someone above sealed already; the header on the wire must announce the trailer.
      wire::put_u16(p->data() + 4, p->flags);
    } else {
      p->seal();
    }
    if (std::uint64_t{p->off} + p->len + wire::kTrailerBytes > p->cap) {
      io.count(no_room);
      io.drop(p, DropReason::too_large);
      return;
    }
    wire::put_u32(p->data() + p->len, detail::crc32c(p->data(), p->len));
    p->len += static_cast<std::uint32_t>(wire::kTrailerBytes);
    io.count(sealed);
    io.down(p);
  }

  void on_receive(Packet* p, StageIo& io) noexcept override {
    if ((p->flags & wire::kFlagCrc) == 0) {
      if (require_) {
        io.count(missing);
        io.drop(p, DropReason::missing_checksum);
        return;
      }
      io.count(unchecked);
      io.up(p);
      return;
    }
    // decode() guaranteed len >= header + trailer when kFlagCrc is set; check anyway so
    // this stage stays safe if it is ever fed an undecoded packet.
    if (p->len < wire::kBaseHeaderBytes + wire::kTrailerBytes) {
      io.count(mismatch);
      io.drop(p, DropReason::checksum);
      return;
    }
    const std::uint32_t body = p->len - static_cast<std::uint32_t>(wire::kTrailerBytes);
    if (detail::crc32c(p->data(), body) != wire::get_u32(p->data() + body)) {
      io.count(mismatch);
      io.drop(p, DropReason::checksum);
      return;
    }
    p->len = body;
    io.count(verified);
    io.up(p);
  }

 private:
  bool require_ = false;
};

}  // namespace

void register_checksum_crc32c(Registry& r) {
  (void)r.add(StageInfo{
      .kind = "checksum.crc32c",
      .synopsis = "Error checking: a CRC32C trailer over the whole datagram, verified and stripped on receive.",
      .notes = "Sets the base-header flag `crc` and appends 4 bytes, the big-endian CRC32C (Castagnoli) of "
               "every byte before them; no extension. Uses the SSE4.2 crc32 instruction when the CPU has it "
               "(detected once at start-up), else slicing-by-8 tables. When the plan places error checking "
               "on the NIC this stage is absent and costs nothing; UDP checksums stay on. A mismatch drops "
               "the packet (`drops.checksum`).",
      .params = {{"require", ParamType::boolean, "false",
                  "Drop received packets that carry no CRC (off: a sender whose NIC checks integrity "
                  "legitimately sends none)."}},
      .counters = counter_list(kCounters),
      .factory = [] { return std::make_unique<Crc32cStage>(); },
      .wire_bytes_per_datagram = wire::kTrailerBytes,
      .serves = "error_checking",
  });
}

}  // namespace tmc

// tmc::Message and tmc::Channel: the public handles. A Channel forwards to its ChannelCore
// (channel_core.hpp); a Message holds one delivered packet and gives it back when done.
#include <limits>
#include <utility>

#include "runtime/channel/channel_core.hpp"
#include "tmc/channel.hpp"

namespace tmc {

// --- Message ---------------------------------------------------------------------------------

Message::Message(Packet* p, std::shared_ptr<detail::BufferHome> home) noexcept : packet_(p), home_(std::move(home)) {}

Message::Message(Message&& other) noexcept
    : sender(std::move(other.sender)),
      sender_id(other.sender_id),
      epoch(other.epoch),
      seq(other.seq),
      has_seq(other.has_seq),
      flags(other.flags),
      received_ns(other.received_ns),
      packet_(std::exchange(other.packet_, nullptr)),
      home_(std::move(other.home_)) {}

Message& Message::operator=(Message&& other) noexcept {
  if (this != &other) {
    reset();
    sender = std::move(other.sender);
    sender_id = other.sender_id;
    epoch = other.epoch;
    seq = other.seq;
    has_seq = other.has_seq;
    flags = other.flags;
    received_ns = other.received_ns;
    packet_ = std::exchange(other.packet_, nullptr);
    home_ = std::move(other.home_);
  }
  return *this;
}

void Message::reset() noexcept {
  if (packet_ != nullptr) {
    home_->give_back(packet_);
    packet_ = nullptr;
  }
  home_.reset();
}

std::span<const std::uint8_t> Message::payload() const noexcept {
  if (packet_ == nullptr) return {};
  return {packet_->payload(), packet_->payload_len};
}

std::string_view Message::text() const noexcept {
  const auto p = payload();
  return {reinterpret_cast<const char*>(p.data()), p.size()};
}

std::vector<std::uint8_t> Message::to_vector() const {
  const auto p = payload();
  return {p.begin(), p.end()};
}

std::uint64_t ChannelStats::counter(std::string_view name) const noexcept {
  for (const auto& [n, v] : counters) {
    if (n == name) return v;
  }
  return 0;
}

double ChannelStats::gauge(std::string_view name) const noexcept {
  for (const auto& [n, v] : gauges) {
    if (n == name) return v;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// --- Channel ---------------------------------------------------------------------------------

Channel::Channel() noexcept = default;
Channel::Channel(std::shared_ptr<detail::ChannelCore> core) noexcept : core_(std::move(core)) {}
Channel::~Channel() { close(); }
Channel::Channel(Channel&& other) noexcept = default;
Channel& Channel::operator=(Channel&& other) noexcept {
  if (this != &other) {
    close();
    core_ = std::move(other.core_);
  }
  return *this;
}

Status Channel::try_open(const Manifest& manifest, const OpenOptions& options, Channel& out) noexcept {
  try {
    std::shared_ptr<detail::ChannelCore> core;
    Status s = detail::ChannelCore::open(manifest, options, core);
    if (!s) return s;
    out = Channel(std::move(core));
    return Status::ok();
  } catch (const Error& e) {
    return e.status();
  } catch (const std::exception& e) {
    return {Code::INTERNAL, std::string("opening channel '") + manifest.id + "': " + e.what()};
  }
}

Status Channel::try_open(const Value& map, const OpenOptions& options, Channel& out) noexcept {
  try {
    if (!map.is_map()) {
      return {Code::INVALID_MANIFEST, "a manifest given as a value must be a map of properties, not a " +
                                          std::string(map.type_name()) +
                                          " (for a YAML file use Channel::open_yaml_file)"};
    }
    Manifest m;
    Diagnostics diag;
    if (!manifest_from_value(map, m, diag)) return {Code::INVALID_MANIFEST, diag.to_string()};
    return try_open(m, options, out);
  } catch (const std::exception& e) {
    return {Code::INTERNAL, std::string("opening channel from a map: ") + e.what()};
  }
}

Status Channel::try_open_yaml_file(const std::string& path, const OpenOptions& options, Channel& out) noexcept {
  try {
    Manifest m;
    Diagnostics diag;
    if (!load_manifest(path, m, diag)) return {Code::INVALID_MANIFEST, diag.to_string()};
    return try_open(m, options, out);
  } catch (const std::exception& e) {
    return {Code::INTERNAL, "opening channel from '" + path + "': " + e.what()};
  }
}

Channel Channel::open(const Manifest& manifest, const OpenOptions& options) {
  Channel c;
  if (Status s = try_open(manifest, options, c); !s) throw Error(std::move(s));
  return c;
}

Channel Channel::open(const Value& map, const OpenOptions& options) {
  Channel c;
  if (Status s = try_open(map, options, c); !s) throw Error(std::move(s));
  return c;
}

Channel Channel::open_yaml_file(const std::string& path, const OpenOptions& options) {
  Channel c;
  if (Status s = try_open_yaml_file(path, options, c); !s) throw Error(std::move(s));
  return c;
}

namespace {
Status closed_status() { return {Code::CLOSED, "the channel is not open"}; }
}  // namespace

Status Channel::send(std::span<const std::uint8_t> bytes) {
  return core_ ? core_->send(bytes.data(), bytes.size(), nullptr) : closed_status();
}
Status Channel::send(std::string_view text) {
  return core_ ? core_->send(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), nullptr)
               : closed_status();
}
Status Channel::send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message) {
  return core_ ? core_->send(bytes.data(), bytes.size(), &per_message) : closed_status();
}
Status Channel::send(std::string_view text, const MessageManifest& per_message) {
  return core_ ? core_->send(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), &per_message)
               : closed_status();
}

Status Channel::update(const Manifest& manifest) { return core_ ? core_->update(manifest) : closed_status(); }
Status Channel::update(const Value& changes) { return core_ ? core_->update(changes) : closed_status(); }

std::optional<Message> Channel::receive(std::chrono::nanoseconds timeout) {
  Message m;
  if (!core_ || !core_->receive(m, timeout)) return std::nullopt;
  return m;
}
Status Channel::receive(Message& out, std::chrono::nanoseconds timeout) {
  return core_ ? core_->receive(out, timeout) : closed_status();
}
std::optional<Message> Channel::try_receive() {
  Message m;
  if (!core_ || !core_->try_receive(m)) return std::nullopt;
  return m;
}
void Channel::on_message(MessageHandler handler) {
  if (core_) core_->set_message_handler(std::move(handler));
}
void Channel::on_event(EventHandler handler) {
  if (core_) core_->set_event_handler(std::move(handler));
}
std::vector<std::string> Channel::members() const { return core_ ? core_->members() : std::vector<std::string>{}; }
std::vector<MemberStatus> Channel::view() const { return core_ ? core_->view() : std::vector<MemberStatus>{}; }
Status Channel::wait_for_members(std::size_t count, std::chrono::nanoseconds timeout) const {
  return core_ ? core_->wait_for_members(count, timeout) : closed_status();
}
Status Channel::send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message,
                     std::future<DeliveryOutcome>* outcome) {
  return core_ ? core_->send(bytes.data(), bytes.size(), &per_message, outcome) : closed_status();
}
Status Channel::send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message,
                     std::future<DeliveryOutcome>* outcome, MessageToken* token) {
  return core_ ? core_->send(bytes.data(), bytes.size(), &per_message, outcome, token) : closed_status();
}
Status Channel::forget(MessageToken token, ForgetScope scope) {
  return core_ ? core_->forget(token, scope) : closed_status();
}
Status Channel::hint_load(double fraction) { return core_ ? core_->hint_load(fraction) : closed_status(); }

Status Channel::send(std::span<const std::uint8_t> bytes, const MessageManifest& per_message, MessageToken* token) {
  return core_ ? core_->send(bytes.data(), bytes.size(), &per_message, nullptr, token) : closed_status();
}

Status Channel::acknowledge(MessageToken token, std::string_view member) {
  return core_ ? core_->acknowledge(token, member) : closed_status();
}

std::string_view delivery_state_name(DeliveryOutcome::State s) noexcept {
  switch (s) {
    case DeliveryOutcome::State::met: return "met";
    case DeliveryOutcome::State::failed: return "failed";
    case DeliveryOutcome::State::unreliable: return "unreliable";
    case DeliveryOutcome::State::abandoned: return "abandoned";
    case DeliveryOutcome::State::forgotten: return "forgotten";
    case DeliveryOutcome::State::expired: return "expired";
  }
  return "?";
}
ChannelStats Channel::stats() const { return core_ ? core_->stats() : ChannelStats{}; }
Plan Channel::plan() const { return core_ ? core_->plan() : Plan{}; }
Manifest Channel::manifest() const { return core_ ? core_->manifest() : Manifest{}; }
std::string Channel::name() const { return core_ ? core_->name() : std::string(); }
std::uint32_t Channel::sender_id() const noexcept { return core_ ? core_->sender_id() : 0; }
bool Channel::is_open() const noexcept { return core_ && core_->is_open(); }
void Channel::close() noexcept {
  if (core_) core_->close();
}

}  // namespace tmc

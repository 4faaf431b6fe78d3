// Channels on real sockets, all on loopback: exchange, process model, ordering, update(),
// errors, hostile packets, counters, close().
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <atomic>
#include <doctest/doctest.h>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "runtime_test_util.hpp"
#include "tmc/channel.hpp"
#include "tmc/wire.hpp"

using namespace std::chrono_literals;
using tmc::test::group_for;
using tmc::test::manifest_for;
using tmc::test::port_for;
using tmc::test::receive_n;
using tmc::test::send_n;

namespace {

tmc::Value map(tmc::Value::Map m) { return tmc::Value(std::move(m)); }

/// Send raw bytes to group:port from a plain socket (the "network" a test controls).
void inject(const std::string& group, std::int64_t port, const void* data, std::size_t n) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  in_addr lo{};
  inet_pton(AF_INET, "127.0.0.1", &lo);
  (void)setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, group.c_str(), &to.sin_addr);
  CHECK(::sendto(fd, data, n, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) == static_cast<ssize_t>(n));
  ::close(fd);
}

}  // namespace

TEST_CASE("two channels in one process exchange messages in both directions") {
  tmc::Manifest m = manifest_for("exchange", 0, "alice");
  m.members = {"alice", "bob"};
  auto a = tmc::Channel::open(m);
  m.name = "bob";
  auto b = tmc::Channel::open(m);
  REQUIRE(a.is_open());
  REQUIRE(b.is_open());
  CHECK(a.send("hello from alice"));
  CHECK(b.send("hello from bob"));

  auto at_b = b.receive(3s);
  REQUIRE(at_b.has_value());
  CHECK(at_b->text() == "hello from alice");
  CHECK(at_b->sender == "alice");
  CHECK(at_b->sender_id == a.sender_id());
  CHECK(at_b->received_ns > 0);

  auto at_a = a.receive(3s);
  REQUIRE(at_a.has_value());
  CHECK(at_a->text() == "hello from bob");
  CHECK(at_a->sender == "bob");

  // Nobody receives their own messages (multicast loopback is filtered).
  CHECK_FALSE(a.try_receive().has_value());
  CHECK_FALSE(b.try_receive().has_value());
  // Both share the default runtime.
  CHECK(tmc::Runtime::default_runtime()->channel_count() >= 2);
}

TEST_CASE("members() lists the manifest's members, senders heard from, and this member") {
  tmc::Manifest ma = manifest_for("members", 1, "alice");
  ma.members = {"alice", "carol"};
  auto a = tmc::Channel::open(ma);
  auto b = tmc::Channel::open(manifest_for("members", 1, "bob"));
  auto c = tmc::Channel::open(manifest_for("members", 1, "dave"));
  CHECK(b.send("hi"));
  CHECK(c.send("hi"));
  CHECK(receive_n(a, 2).size() == 2);
  const auto members = a.members();
  CHECK(std::find(members.begin(), members.end(), "alice") != members.end());
  CHECK(std::find(members.begin(), members.end(), "carol") != members.end());
  // bob and dave are not in alice's manifest: she knows them only by id.
  auto hex = [](std::uint32_t id) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", id);
    return std::string(buf);
  };
  CHECK(std::find(members.begin(), members.end(), hex(b.sender_id())) != members.end());
  CHECK(std::find(members.begin(), members.end(), hex(c.sender_id())) != members.end());
}

TEST_CASE("two runtimes (standing in for two processes) on one group") {
  tmc::OpenOptions o1;
  o1.runtime = tmc::Runtime::create();
  tmc::OpenOptions o2;
  o2.runtime = tmc::Runtime::create();
  auto a = tmc::Channel::open(manifest_for("runtimes", 2, "p1"), o1);
  auto b = tmc::Channel::open(manifest_for("runtimes", 2, "p2"), o2);
  auto c = tmc::Channel::open(manifest_for("runtimes", 2, "p3"), o2);  // shares p2's loop
  CHECK(o2.runtime->channel_count() == 2);
  REQUIRE(send_n(a, 50, "a"));
  const auto at_b = receive_n(b, 50);
  const auto at_c = receive_n(c, 50);
  CHECK(at_b.size() == 50);
  CHECK(at_c.size() == 50);
  REQUIRE(send_n(b, 10, "b"));
  CHECK(receive_n(a, 10).size() == 10);
  CHECK(receive_n(c, 10).size() == 10);
}

// The child side of the next test. It runs only in the process that test starts (fork +
// exec of this binary, so the child is a fresh process with nothing inherited from the
// parent's threads); in an ordinary run the variable is unset and it returns at once.
TEST_CASE("echo child (helper; runs only when started by the fork test)") {
  const char* spec = std::getenv("TMC_TEST_ECHO_CHILD");
  if (spec == nullptr) return;
  const std::string s(spec);  // "group port"
  const auto space = s.find(' ');
  REQUIRE(space != std::string::npos);
  tmc::Manifest cm;
  cm.id = "fork-echo";
  cm.name = "child";
  cm.members = {"parent", "child"};
  cm.group = s.substr(0, space);
  cm.port = std::stoi(s.substr(space + 1));
  auto c = tmc::Channel::open(cm);
  bool quit = false;
  while (!quit) {
    auto msg = c.receive(10s);
    REQUIRE(msg.has_value());
    const std::string text(msg->text());
    quit = text == "quit";
    if (text.rfind("ping-", 0) == 0) CHECK(c.send("pong-" + text.substr(5)));
  }
}

TEST_CASE("a child process (fork + exec) joins the group and echoes") {
  tmc::Manifest m = manifest_for("fork-echo", 3, "parent");
  m.members = {"parent", "child"};
  const std::string spec = m.group + " " + std::to_string(m.port);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setenv("TMC_TEST_ECHO_CHILD", spec.c_str(), 1);
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execl("/proc/self/exe", "tmc_runtime_tests", "--test-case=echo child*", "--no-intro=true",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  auto p = tmc::Channel::open(m);
  // The child needs a moment to join; ping until it answers (bounded, not timed).
  bool answered = false;
  for (int attempt = 0; attempt < 200 && !answered; ++attempt) {
    CHECK(p.send("ping-0"));
    if (auto r = p.receive(50ms)) answered = r->text() == "pong-0";
  }
  REQUIRE(answered);
  while (p.try_receive()) {
  }
  for (int i = 1; i <= 20; ++i) CHECK(p.send("ping-" + std::to_string(i)));
  std::set<std::string> pongs;
  while (pongs.size() < 20) {
    auto r = p.receive(5s);
    if (!r) break;
    if (r->text() != "pong-0") pongs.insert(std::string(r->text()));
    CHECK(r->sender == "child");
  }
  CHECK(pongs.size() == 20);
  CHECK(p.send("quit"));
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("an ordered, checked channel delivers each sender's messages in order") {
  tmc::Manifest m = manifest_for("ordered", 4, "tx");
  m.point_to_point_ordering = tmc::OrderingMode::strict;
  m.error_checking = true;
  auto tx = tmc::Channel::open(m);
  m.name = "rx";
  auto rx = tmc::Channel::open(m);
  const auto kinds = tx.plan().software_kinds();
  CHECK(std::find(kinds.begin(), kinds.end(), "checksum.crc32c") != kinds.end());
  REQUIRE(send_n(tx, 300));
  std::uint64_t last_seq = 0;
  int got = 0;
  bool in_order = true;
  for (;;) {
    auto r = rx.receive(3s);
    if (!r) break;
    CHECK(r->has_seq);
    CHECK((r->flags & tmc::wire::kFlagCrc) != 0);
    if (got > 0 && r->seq <= last_seq) in_order = false;
    if (r->text() != "m" + std::to_string(got)) in_order = false;
    last_seq = r->seq;
    if (++got == 300) break;
  }
  CHECK(in_order);
  CHECK(got == 300);
  const auto s = rx.stats();
  CHECK(s.counter("checksum.verified") == 300);
  CHECK(s.loss_ratio == doctest::Approx(0.0));
  CHECK(tx.stats().counter("checksum.sealed") == 300);
}

// 'ordered messages: flagged' (per-message ordering "and vice versa"): on a
// group-ordered channel, messages are unordered unless sent with 'ordered: true'. The
// unordered ones pass ordering.group at once; the one that opts in is sequenced.
TEST_CASE("per-message ordering: opt in with 'ordered: true' when the channel's ordering is flagged") {
  tmc::Manifest m = manifest_for("optin", 5, "tx");
  m.group_ordering = true;
  m.ordered_messages = "flagged";
  auto tx = tmc::Channel::open(m);
  m.name = "rx";
  auto rx = tmc::Channel::open(m);
  tmc::MessageManifest in;
  in.ordered = true;
  REQUIRE(tx.send("plain-0").is_ok());
  REQUIRE(tx.send("opted-in", in).is_ok());
  REQUIRE(tx.send("plain-1").is_ok());
  std::set<std::string> unordered;
  std::set<std::string> ordered;
  for (int got = 0; got < 3; ++got) {
    auto r = rx.receive(3s);
    REQUIRE(r);
    ((r->flags & tmc::wire::kFlagUnordered) != 0 ? unordered : ordered).insert(std::string(r->text()));
  }
  CHECK(unordered == std::set<std::string>{"plain-0", "plain-1"});
  CHECK(ordered == std::set<std::string>{"opted-in"});
  CHECK(rx.stats().counter("ordering.group_unordered") == 2);
  CHECK(rx.stats().counter("ordering.group_delivered") >= 1);

  // The same per-message property on a channel that orders nothing is refused clearly.
  tmc::Manifest plain = manifest_for("optin-none", 6, "solo");
  auto solo = tmc::Channel::open(plain);
  const tmc::Status st = solo.send("x", in);
  CHECK(st.code() == tmc::Code::NOT_AVAILABLE);
  CHECK(st.message().find("'ordered: true'") != std::string::npos);
}

TEST_CASE("update() switches error checking on mid-stream without losing queued messages") {
  auto tx = tmc::Channel::open(manifest_for("update-crc", 5, "tx"));
  auto rx = tmc::Channel::open(manifest_for("update-crc", 5, "rx"));
  for (const auto& k : tx.plan().software_kinds()) REQUIRE(k != "checksum.crc32c");
  // Queue messages and switch at once: whatever the loop has not taken yet goes through
  // the new pipeline; nothing is lost either way.
  for (int i = 0; i < 100; ++i) REQUIRE(tx.send("m" + std::to_string(i)));
  REQUIRE(tx.update(map({{"error checking", true}})));
  CHECK(tx.manifest().error_checking);
  const auto kinds = tx.plan().software_kinds();
  CHECK(std::find(kinds.begin(), kinds.end(), "checksum.crc32c") != kinds.end());
  REQUIRE(send_n(tx, 100, "m", 100));
  const auto got = receive_n(rx, 200);
  REQUIRE(got.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(got[static_cast<std::size_t>(i)] == "m" + std::to_string(i));
  const auto s = tx.stats();
  CHECK(s.messages_sent == 200);
  CHECK(s.counter("checksum.sealed") >= 100);
  CHECK(s.counter("shell.updates") == 1);
  // The receiver switches too, and now checks every message.
  REQUIRE(rx.update(map({{"error checking", true}})));
  REQUIRE(tx.send("checked"));
  auto r = rx.receive(3s);
  REQUIRE(r.has_value());
  CHECK(r->text() == "checked");
  CHECK(rx.stats().counter("checksum.verified") >= 1);
}

TEST_CASE("update() to a new group leaves the old one and joins the new") {
  auto tx = tmc::Channel::open(manifest_for("regroup", 6, "tx"));
  auto old_rx = tmc::Channel::open(manifest_for("regroup", 6, "old"));
  auto new_rx = tmc::Channel::open(manifest_for("regroup", 7, "new"));
  REQUIRE(tx.update(map({{"group", group_for(7)}, {"port", port_for(7)}})));
  CHECK(tx.plan().transport.group == group_for(7));
  REQUIRE(tx.send("after"));
  auto r = new_rx.receive(3s);
  REQUIRE(r.has_value());
  CHECK(r->text() == "after");
  CHECK_FALSE(old_rx.receive(200ms).has_value());
}

TEST_CASE("errors: each bad input gets a clear status") {
  SUBCASE("a group outside 224.0.0.0/4") {
    tmc::Manifest m = manifest_for("bad-group", 8, "x");
    m.group = "10.1.2.3";
    tmc::Channel c;
    const tmc::Status s = tmc::Channel::try_open(m, {}, c);
    CHECK_FALSE(s.is_ok());
    CHECK((s.code() == tmc::Code::BAD_ADDRESS || s.code() == tmc::Code::INVALID_MANIFEST));
    CHECK(s.message().find("10.1.2.3") != std::string::npos);
    CHECK_FALSE(c.is_open());
  }
  SUBCASE("an interface that does not exist") {
    tmc::Manifest m = manifest_for("bad-if", 8, "x");
    m.interface = "nosuchif0";
    tmc::Channel c;
    const tmc::Status s = tmc::Channel::try_open(m, {}, c);
    CHECK(s.code() == tmc::Code::NO_SUCH_INTERFACE);
    CHECK(s.message().find("nosuchif0") != std::string::npos);
    CHECK_THROWS_AS(tmc::Channel::open(m), tmc::Error);
  }
  SUBCASE("a port held by a socket that does not share it") {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_port = htons(static_cast<std::uint16_t>(port_for(9)));
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&any), sizeof any) == 0);
    tmc::Channel c;
    const tmc::Status s = tmc::Channel::try_open(manifest_for("in-use", 9, "x"), {}, c);
    CHECK(s.code() == tmc::Code::ADDRESS_IN_USE);
    CHECK(s.message().find(std::to_string(port_for(9))) != std::string::npos);
    ::close(fd);
  }
  SUBCASE("a message larger than 'max message bytes'") {
    tmc::Manifest m = manifest_for("too-large", 8, "x");
    m.max_message_bytes = 1000;  // fits one datagram: no fragmentation stage
    auto c = tmc::Channel::open(m);
    REQUIRE(c.plan().transport.max_payload_bytes > 1000);
    std::vector<std::uint8_t> big(1001, 0x55);
    const tmc::Status s = c.send(big);
    CHECK(s.code() == tmc::Code::MESSAGE_TOO_LARGE);
    CHECK(s.message().find("1001") != std::string::npos);
    CHECK(s.message().find("1000") != std::string::npos);
    std::vector<std::uint8_t> fits(1000, 0x55);
    CHECK(c.send(fits));
  }
  SUBCASE("send on a receive-only member, receive on a send-only one") {
    tmc::Manifest m = manifest_for("duplex", 8, "ro");
    m.duplexity = tmc::Duplexity::receive_only;
    auto ro = tmc::Channel::open(m);
    CHECK(ro.send("x").code() == tmc::Code::NOT_PERMITTED_BY_DUPLEXITY);
    m.name = "so";
    m.duplexity = tmc::Duplexity::send_only;
    auto so = tmc::Channel::open(m);
    tmc::Message msg;
    CHECK(so.receive(msg, 10ms).code() == tmc::Code::NOT_PERMITTED_BY_DUPLEXITY);
    // The send-only member still reaches the receive-only one.
    CHECK(so.send("one way"));
    auto r = ro.receive(3s);
    REQUIRE(r.has_value());
    CHECK(r->text() == "one way");
  }
  SUBCASE("a malformed manifest") {
    tmc::Channel c;
    const tmc::Status s = tmc::Channel::try_open(map({{"id", "x"}, {"gruop", "239.1.1.1"}}), {}, c);
    CHECK(s.code() == tmc::Code::INVALID_MANIFEST);
    CHECK(s.message().find("gruop") != std::string::npos);
    CHECK(tmc::Channel::try_open(tmc::Value("just a string"), {}, c).code() == tmc::Code::INVALID_MANIFEST);
    CHECK(tmc::Channel::try_open_yaml_file("/nonexistent/manifest.yaml", {}, c).code() ==
          tmc::Code::INVALID_MANIFEST);
  }
  SUBCASE("a bad update leaves the channel as it was") {
    auto c = tmc::Channel::open(manifest_for("bad-update", 8, "x"));
    const tmc::Plan before = c.plan();
    CHECK_FALSE(c.update(map({{"interface", "nosuchif0"}})).is_ok());
    CHECK_FALSE(c.update(map({{"gruop", "x"}})).is_ok());
    CHECK(c.plan().to_string() == before.to_string());
    CHECK(c.send("still fine"));
  }
  SUBCASE("calls on a closed or empty handle") {
    tmc::Channel none;
    CHECK(none.send("x").code() == tmc::Code::CLOSED);
    CHECK_FALSE(none.receive(1ms).has_value());
    auto c = tmc::Channel::open(manifest_for("closed", 8, "x"));
    c.close();
    c.close();  // idempotent
    CHECK(c.send("x").code() == tmc::Code::CLOSED);
    tmc::Message msg;
    CHECK(c.receive(msg, 1ms).code() == tmc::Code::CLOSED);
  }
}

TEST_CASE("hostile datagrams are counted as malformed and nothing breaks") {
  auto rx = tmc::Channel::open(manifest_for("hostile", 10, "rx"));
  auto tx = tmc::Channel::open(manifest_for("hostile", 10, "tx"));
  const std::string group = group_for(10);
  const std::int64_t port = port_for(10);
  // Garbage, a truncated header, a header that claims too much, a wrong version, and a
  // well-formed datagram of another channel.
  const std::uint8_t garbage[] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3};
  inject(group, port, garbage, sizeof garbage);
  std::uint8_t header[24] = {};
  tmc::wire::put_u16(header, tmc::wire::kMagic);
  header[2] = tmc::wire::kVersion;
  inject(group, port, header, 10);
  tmc::wire::put_u32(header + 20, 1000);  // payload_len beyond the datagram
  inject(group, port, header, sizeof header);
  header[2] = 99;
  tmc::wire::put_u32(header + 20, 0);
  inject(group, port, header, sizeof header);
  header[2] = tmc::wire::kVersion;
  tmc::wire::put_u32(header + 8, 0x12345678);  // some other channel
  inject(group, port, header, sizeof header);
  std::vector<std::uint8_t> random_bytes(1400);
  for (std::size_t i = 0; i < random_bytes.size(); ++i) random_bytes[i] = static_cast<std::uint8_t>(i * 131 + 7);
  for (int i = 0; i < 20; ++i) inject(group, port, random_bytes.data(), random_bytes.size() - static_cast<std::size_t>(i));

  REQUIRE(tx.send("real"));
  auto r = rx.receive(3s);
  REQUIRE(r.has_value());
  CHECK(r->text() == "real");
  const auto s = rx.stats();
  CHECK(s.drop_count(tmc::DropReason::malformed) == 24);
  CHECK(s.drop_count(tmc::DropReason::foreign_channel) == 1);
  CHECK(s.counter("wire.too short") + s.counter("wire.too_short") + s.counter("wire.bad magic") +
            s.counter("wire.bad_magic") + s.counter("wire.bad version") + s.counter("wire.bad_version") +
            s.counter("wire.bad length") + s.counter("wire.bad_length") >=
        4);
  CHECK(s.messages_delivered == 1);
  CHECK_FALSE(rx.try_receive().has_value());
}

TEST_CASE("counters and estimates") {
  tmc::Manifest m = manifest_for("counters", 11, "tx");
  m.point_to_point_ordering = tmc::OrderingMode::drop_stale;
  auto tx = tmc::Channel::open(m);
  m.name = "rx";
  auto rx = tmc::Channel::open(m);
  REQUIRE(send_n(tx, 40));
  REQUIRE(receive_n(rx, 40).size() == 40);
  const auto ts = tx.stats();
  CHECK(ts.messages_sent == 40);
  CHECK(ts.bytes_sent == 10 * 2 + 30 * 3);  // "m0".."m9", "m10".."m39"
  CHECK(ts.datagrams_sent == 40);
  CHECK(ts.datagram_bytes_sent > ts.bytes_sent);
  CHECK(ts.send_latency_ns > 0);
  CHECK(ts.send_errors == 0);
  const auto rs = rx.stats();
  CHECK(rs.messages_delivered == 40);
  CHECK(rs.bytes_delivered == ts.bytes_sent);
  CHECK(rs.datagrams_received >= 40);
  CHECK(rs.loss_ratio == doctest::Approx(0.0));
  CHECK(rs.interarrival_ns >= 0);
  CHECK(rs.counter("pipeline.delivered_messages") == 40);
  std::uint64_t drops = 0;
  for (auto d : rs.drops) drops += d;
  CHECK(drops == 0);
  CHECK(rs.own_datagrams == 0);  // rx sent nothing
  // Every datagram rx read is accounted for: delivered, its own, or dropped.
  CHECK(rs.datagrams_received == rs.messages_delivered + rs.own_datagrams + drops + rs.receive_queue_full);
  // tx's socket is on the same group, so the kernel loops tx's own 40 datagrams back to it;
  // the pipeline ignores them and counts them (they arrive asynchronously: poll with a bound).
  std::uint64_t own = 0;
  for (int i = 0; i < 500 && own < 40; ++i) {
    own = tx.stats().own_datagrams;
    if (own < 40) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(own == 40);
  CHECK(tx.stats().messages_delivered == 0);
  // A channel without sequence numbers has no loss estimate.
  auto plain = tmc::Channel::open(manifest_for("counters-plain", 12, "p"));
  CHECK(plain.stats().loss_ratio < 0);
}

TEST_CASE("close() flushes every message send() accepted") {
  auto rx = tmc::Channel::open(manifest_for("close-flush", 13, "rx"));
  {
    tmc::OpenOptions o;
    o.runtime = tmc::Runtime::create();
    auto tx = tmc::Channel::open(manifest_for("close-flush", 13, "tx"), o);
    for (int i = 0; i < 100; ++i) REQUIRE(tx.send("m" + std::to_string(i)));
    tx.close();
    CHECK(tx.stats().datagrams_sent == 100);
  }
  const auto got = receive_n(rx, 100);
  CHECK(got.size() == 100);
}

TEST_CASE("sync send returns after the datagram is handed to the kernel") {
  tmc::Manifest m = manifest_for("sync", 14, "tx");
  m.synchronicity = tmc::Synchronicity::sync;
  auto tx = tmc::Channel::open(m);
  auto rx = tmc::Channel::open(manifest_for("sync", 14, "rx"));
  for (int i = 0; i < 20; ++i) {
    REQUIRE(tx.send("s" + std::to_string(i)));
    // Handed to the kernel: the counter already shows it, with no waiting.
    CHECK(tx.stats().datagrams_sent == static_cast<std::uint64_t>(i + 1));
  }
  CHECK(receive_n(rx, 20).size() == 20);
}

TEST_CASE("handler form delivers on the loop thread and may send from there") {
  auto rt = tmc::Runtime::create();
  tmc::OpenOptions o;
  o.runtime = rt;
  auto echo = tmc::Channel::open(manifest_for("handler", 15, "echo"), o);
  std::atomic<int> handled{0};
  std::atomic<bool> on_loop{true};
  echo.on_message([&](tmc::Message&& msg) {
    if (!rt->on_loop_thread()) on_loop = false;
    ++handled;
    (void)echo.send("re:" + std::string(msg.text()));
  });
  auto client = tmc::Channel::open(manifest_for("handler", 15, "client"));
  std::this_thread::sleep_for(20ms);  // the handler is installed by the loop
  REQUIRE(send_n(client, 10, "q"));
  const auto replies = receive_n(client, 10);
  CHECK(replies.size() == 10);
  CHECK(handled.load() == 10);
  CHECK(on_loop.load());
  echo.on_message(nullptr);
  std::this_thread::sleep_for(20ms);
  REQUIRE(client.send("queued"));
  auto q = echo.receive(3s);
  REQUIRE(q.has_value());
  CHECK(q->text() == "queued");
}

TEST_CASE("a handler set after open gets the messages delivered before it first, in order") {
  // The channel delivers from the moment it opens, so an application that sets its handler
  // right after open() races the first messages; they wait in the receive queue, and the
  // handler must get them before any later one, or a handler-only application never sees
  // them (a member's log once missed the first message of the whole run this way).
  auto rx = tmc::Channel::open(manifest_for("handler-late", 15, "rx"));
  auto tx = tmc::Channel::open(manifest_for("handler-late", 15, "tx"));
  REQUIRE(send_n(tx, 20, "early"));
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (rx.stats().messages_delivered < 20 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(2ms);
  }
  REQUIRE(rx.stats().messages_delivered == 20);  // delivered, queued: no handler yet
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> got;
  rx.on_message([&](tmc::Message&& msg) {
    std::lock_guard<std::mutex> lock(mu);
    got.emplace_back(msg.text());
    cv.notify_all();
  });
  REQUIRE(send_n(tx, 5, "late"));
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, 5s, [&] { return got.size() >= 25; });
  }
  rx.on_message(nullptr);
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(got.size() == 25);
  for (int i = 0; i < 20; ++i) CHECK(got[static_cast<std::size_t>(i)] == "early" + std::to_string(i));
  for (int i = 0; i < 5; ++i) CHECK(got[static_cast<std::size_t>(20 + i)] == "late" + std::to_string(i));
  CHECK(!rx.try_receive().has_value());  // the queue was handed over, not left behind
}

TEST_CASE("messages outlive their channel and hold their buffers until dropped") {
  auto tx = tmc::Channel::open(manifest_for("outlive", 16, "tx"));
  std::optional<tmc::Message> kept;
  {
    auto rx = tmc::Channel::open(manifest_for("outlive", 16, "rx"));
    REQUIRE(tx.send("keep me"));
    kept = rx.receive(3s);
    REQUIRE(kept.has_value());
  }
  CHECK(kept->text() == "keep me");
  tmc::Message moved = std::move(*kept);
  CHECK_FALSE(kept->valid());
  CHECK(moved.to_vector().size() == 7);
}

TEST_CASE("many senders on several threads; every message arrives once") {
  auto rx = tmc::Channel::open(manifest_for("threads", 17, "rx"));
  auto tx = tmc::Channel::open(manifest_for("threads", 17, "tx"));
  constexpr int kThreads = 4;
  constexpr int kEach = 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&tx, t] { (void)send_n(tx, kEach, "t" + std::to_string(t) + "-"); });
  }
  for (auto& th : threads) th.join();
  const auto got = receive_n(rx, kThreads * kEach);
  CHECK(got.size() == kThreads * kEach);
  CHECK(std::set<std::string>(got.begin(), got.end()).size() == got.size());
}

TEST_CASE("unicast fan-out when multicast is off") {
  const auto p0 = port_for(18);
  const auto p1 = port_for(19);
  const std::vector<std::string> members = {"u0@127.0.0.1:" + std::to_string(p0), "u1@127.0.0.1:" + std::to_string(p1)};
  tmc::Manifest m;
  m.id = "fanout";
  m.multicast = false;
  m.members = members;
  m.name = "u0";
  auto a = tmc::Channel::open(m);
  m.name = "u1";
  auto b = tmc::Channel::open(m);
  CHECK_FALSE(a.plan().transport.multicast);
  REQUIRE(a.send("to b"));
  REQUIRE(b.send("to a"));
  auto at_b = b.receive(3s);
  auto at_a = a.receive(3s);
  REQUIRE(at_b.has_value());
  REQUIRE(at_a.has_value());
  CHECK(at_b->text() == "to b");
  CHECK(at_a->text() == "to a");
  CHECK(at_a->sender == "u1");
  // The member's own port is exclusive: a second u0 cannot take it.
  m.name = "u0";
  tmc::Channel dup;
  CHECK(tmc::Channel::try_open(m, {}, dup).code() == tmc::Code::ADDRESS_IN_USE);
}

TEST_CASE("a two-member unicast channel opened before its peer hears the peer once it runs") {
  // Its socket is connected to the one peer, so the kernel reports the "port unreachable"
  // of the first sends as a socket error, which stops libuv's poll of it; the channel must
  // poll again and not go deaf.
  const auto p0 = port_for(22);
  const auto p1 = port_for(23);
  tmc::Manifest m;
  m.id = "early";
  m.multicast = false;
  m.members = {"e0@127.0.0.1:" + std::to_string(p0), "e1@127.0.0.1:" + std::to_string(p1)};
  m.name = "e0";
  auto a = tmc::Channel::open(m);
  // A handler: the loop reads the socket (a blocked receive() would read it itself).
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> at_a;
  a.on_message([&](tmc::Message&& msg) {
    std::lock_guard<std::mutex> l(mu);
    at_a.emplace_back(msg.text());
    cv.notify_all();
  });
  for (int i = 0; i < 3; ++i) {
    REQUIRE(a.send("before"));
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(200ms);
  CHECK(a.stats().counter("shell.peer_refused") >= 1);
  m.name = "e1";
  auto b = tmc::Channel::open(m);
  REQUIRE(b.send("to e0"));
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, 3s, [&] { return !at_a.empty(); });
    REQUIRE(at_a.size() == 1);
    CHECK(at_a[0] == "to e0");
  }
  REQUIRE(a.send("to e1"));
  auto at_b = b.receive(3s);
  REQUIRE(at_b.has_value());
  CHECK(at_b->text() == "to e1");
  CHECK(a.stats().counter("shell.receive_errors") == 0);
}

TEST_CASE("UDP GSO: equal-sized datagrams coalesced into one send arrive as separate messages") {
  tmc::OpenOptions o;
  o.caps.nic.udp_gso = true;
  o.runtime = tmc::Runtime::create();
  auto tx = tmc::Channel::open(manifest_for("gso", 20, "tx"), o);
  auto rx = tmc::Channel::open(manifest_for("gso", 20, "rx"));
  REQUIRE(tx.plan().transport.gso);
  // Fill the send queue before the loop wakes, so one drain sees many equal datagrams.
  std::vector<std::uint8_t> payload(500);
  for (int i = 0; i < 64; ++i) {
    payload[0] = static_cast<std::uint8_t>(i);
    REQUIRE(tx.send(payload));
  }
  int got = 0;
  std::set<int> firsts;
  while (got < 64) {
    auto m = rx.receive(3s);
    if (!m) break;
    CHECK(m->size() == 500);
    firsts.insert(m->payload()[0]);
    ++got;
  }
  CHECK(got == 64);
  CHECK(firsts.size() == 64);
  MESSAGE("GSO sends: " << tx.stats().counter("shell.gso_sends"));
}

TEST_CASE("close() from inside a handler returns at once and the channel closes after") {
  auto rt = tmc::Runtime::create();
  tmc::OpenOptions o;
  o.runtime = rt;
  auto rx = tmc::Channel::open(manifest_for("close-in-handler", 21, "rx"), o);
  auto tx = tmc::Channel::open(manifest_for("close-in-handler", 21, "tx"));
  std::atomic<int> seen{0};
  rx.on_message([&](tmc::Message&& m) {
    ++seen;
    if (m.text() == "bye") rx.close();
  });
  std::this_thread::sleep_for(20ms);
  REQUIRE(tx.send("hello"));
  REQUIRE(tx.send("bye"));
  for (int i = 0; i < 300 && rx.is_open(); ++i) std::this_thread::sleep_for(10ms);
  CHECK_FALSE(rx.is_open());
  CHECK(seen.load() == 2);
  CHECK(rx.send("x").code() == tmc::Code::CLOSED);
  for (int i = 0; i < 300 && rt->channel_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  CHECK(rt->channel_count() == 0);
  CHECK(rx.stats().messages_delivered == 2);
}

TEST_CASE("fragmentation: messages up to 'max message bytes' arrive whole, larger ones are refused") {
  tmc::Manifest m = manifest_for("fragments", 11, "tx");
  m.max_message_bytes = 4 * 1024 * 1024;
  m.members = {"tx", "rx"};
  // Reliable, so that a fragment the loopback socket buffer drops is repaired, not a flaky test.
  m.reliability.enabled = true;
  m.point_to_point_ordering = tmc::OrderingMode::strict;
  m.ordering_hold_us = 10'000'000;
  auto tx = tmc::Channel::open(m);
  m.name = "rx";
  auto rx = tmc::Channel::open(m);
  REQUIRE(tx.wait_for_members(1, std::chrono::seconds(10)));
  bool has_fragment = false;
  for (const auto& k : tx.plan().software_kinds()) has_fragment |= k == "fragment.split";
  REQUIRE(has_fragment);
  std::vector<std::vector<std::uint8_t>> sent;
  for (std::size_t size : {std::size_t{10}, std::size_t{5000}, std::size_t{300000}, std::size_t{4 * 1024 * 1024}}) {
    std::vector<std::uint8_t> b(size);
    for (std::size_t i = 0; i < size; ++i) b[i] = static_cast<std::uint8_t>((i * 7 + size) & 0xFF);
    std::future<tmc::DeliveryOutcome> outcome;
    REQUIRE(tx.send(b, tmc::MessageManifest{}, &outcome));
    sent.push_back(std::move(b));
    REQUIRE(outcome.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    const tmc::DeliveryOutcome o = outcome.get();
    CHECK(o.state == tmc::DeliveryOutcome::State::met);
    CHECK(o.acked == std::vector<std::string>{"rx"});
  }
  std::vector<std::uint8_t> too_big(4 * 1024 * 1024 + 1);
  CHECK(tx.send(too_big).code() == tmc::Code::MESSAGE_TOO_LARGE);
  for (const auto& want : sent) {
    auto got = rx.receive(std::chrono::seconds(5));
    REQUIRE(got.has_value());
    CHECK(got->to_vector() == want);
  }
}

TEST_CASE("acknowledgment by reply: the reply settles the request, and no ack datagram is sent") {
  tmc::Manifest m = manifest_for("by-reply", 12, "client");
  m.members = {"client", "server"};
  m.reliability.enabled = true;
  m.reliability.messages = "flagged";
  m.reliability.acks = "application";
  auto client = tmc::Channel::open(m);
  m.name = "server";
  auto server = tmc::Channel::open(m);
  REQUIRE(client.wait_for_members(1, std::chrono::seconds(10)));
  REQUIRE(server.wait_for_members(1, std::chrono::seconds(10)));
  // The server answers every request, unreliably: the answer is the ack.
  server.on_message([&server](tmc::Message&& msg) { (void)server.send("re: " + std::string(msg.text())); });
  tmc::MessageManifest reliable;
  reliable.reliability = true;
  const std::string text = "request";
  std::uint64_t id = 0;
  REQUIRE(client.send(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), reliable, &id));
  CHECK(id != 0);
  auto reply = client.receive(std::chrono::seconds(5));
  REQUIRE(reply.has_value());
  CHECK(reply->text() == "re: request");
  REQUIRE(client.acknowledge(id, "server"));
  bool met = false;
  for (int i = 0; i < 500 && !met; ++i) {
    met = client.stats().counter("reliability.met") == 1;
    if (!met) std::this_thread::sleep_for(10ms);
  }
  CHECK(met);
  CHECK(server.stats().counter("reliability.acks_sent") == 0);
  // Acknowledging a settled message, or on a channel without reliability, changes nothing.
  CHECK(client.acknowledge(id, "server"));
  tmc::Manifest plain = manifest_for("by-reply-plain", 13, "a");
  auto a = tmc::Channel::open(plain);
  CHECK(a.acknowledge(1, "b").code() == tmc::Code::NOT_AVAILABLE);
}

TEST_CASE("coalesce turn: what a handler sends for one input shares a datagram; a reply to any of it acks it") {
  // The client's handler answers the server's "go" with two reliable requests: one turn,
  // one datagram. The server answers each request (two replies, one turn: one datagram).
  // The client acknowledges only the SECOND request's id: the batch that carried both is
  // settled by it (a reply to either shows the server received the datagram).
  tmc::Manifest m = manifest_for("coalesce-turn", 22, "client");
  m.members = {"client", "server"};
  m.reliability.enabled = true;
  m.reliability.messages = "flagged";
  m.reliability.acks = "application";
  m.pacing.enabled = true;
  m.pacing.coalesce_turn = true;
  auto client = tmc::Channel::open(m);
  m.name = "server";
  auto server = tmc::Channel::open(m);
  REQUIRE(client.plan().to_string().find("pacing.coalesce") != std::string::npos);
  REQUIRE(client.wait_for_members(1, std::chrono::seconds(10)));
  REQUIRE(server.wait_for_members(1, std::chrono::seconds(10)));
  std::atomic<int> requests{0};
  server.on_message([&server, &requests](tmc::Message&& msg) {
    const std::string text(msg.text());
    if (text.rfind("req ", 0) != 0) return;
    ++requests;
    (void)server.send("re: " + text.substr(4));
    (void)server.send("done: " + text.substr(4));
  });
  tmc::MessageManifest reliable;
  reliable.reliability = true;
  std::atomic<std::uint64_t> second{0};
  std::atomic<int> replies{0};
  client.on_message([&](tmc::Message&& msg) {
    const std::string text(msg.text());
    if (text == "go") {
      const std::string a = "req 1";
      const std::string b = "req 2";
      std::uint64_t id = 0;
      CHECK(client.send(std::span(reinterpret_cast<const std::uint8_t*>(a.data()), a.size()), reliable, &id));
      CHECK(client.send(std::span(reinterpret_cast<const std::uint8_t*>(b.data()), b.size()), reliable, &id));
      second = id;
      return;
    }
    if (text == "re: 2") CHECK(client.acknowledge(second.load(), "server"));
    ++replies;
  });
  REQUIRE(server.send("go"));
  bool met = false;
  for (int i = 0; i < 500 && !met; ++i) {
    met = client.stats().counter("reliability.met") == 1 && replies.load() >= 4;
    if (!met) std::this_thread::sleep_for(10ms);
  }
  CHECK(met);
  const tmc::ChannelStats cs = client.stats();
  const tmc::ChannelStats ss = server.stats();
  CHECK(cs.counter("pacing.coalesce_batches_sent") >= 1);
  CHECK(cs.counter("pacing.coalesce_messages_batched") >= 2);
  CHECK(ss.counter("pacing.coalesce_batches_received") >= 1);
  CHECK(ss.counter("pacing.coalesce_batches_sent") >= 1);  // the two replies to one request
  CHECK(ss.counter("reliability.acks_sent") == 0);
  // Settled by the reply to the second request alone: nothing failed, and the first
  // request's id now names a settled message (acknowledging it changes nothing).
  CHECK(cs.counter("reliability.failed") == 0);
  CHECK(requests.load() >= 2);
}

TEST_CASE("acknowledgment by reply: batched acks from handlers and threads are each counted once") {
  // Each server answers each request once (a repeat is not answered), so an ack that a
  // batch lost would leave its request unmet for good, and one counted twice would show in
  // the outcome's members or the met counter. s1's replies are acknowledged in the handler
  // (the loop's batch); s2's from this thread (the cross-thread path), twice each.
  tmc::Manifest m = manifest_for("by-reply-batch", 14, "client");
  m.members = {"client", "s1", "s2"};
  m.reliability.enabled = true;
  m.reliability.messages = "flagged";
  m.reliability.acks = "application";
  auto client = tmc::Channel::open(m);
  m.name = "s1";
  auto s1 = tmc::Channel::open(m);
  m.name = "s2";
  auto s2 = tmc::Channel::open(m);
  REQUIRE(client.wait_for_members(2, std::chrono::seconds(10)));
  REQUIRE(s1.wait_for_members(2, std::chrono::seconds(10)));
  REQUIRE(s2.wait_for_members(2, std::chrono::seconds(10)));
  constexpr int kRequests = 200;
  auto serve = [](tmc::Channel& server, const std::string& name) {
    auto answered = std::make_shared<std::set<std::string>>();
    server.on_message([&server, name, answered](tmc::Message&& msg) {
      const std::string text(msg.text());
      if (text.rfind("req ", 0) != 0 || !answered->insert(text).second) return;
      (void)server.send(name + " " + text.substr(4));
    });
  };
  serve(s1, "s1");
  serve(s2, "s2");
  std::vector<std::atomic<std::uint64_t>> ids(kRequests);
  std::mutex mu;
  std::vector<std::pair<int, std::string>> later;  // acks for this thread to make
  client.on_message([&](tmc::Message&& msg) {
    const std::string text(msg.text());
    const std::string who = text.substr(0, 2);
    const int i = std::stoi(text.substr(3));
    const std::uint64_t id = ids[static_cast<std::size_t>(i)].load();
    if (who == "s1" && id != 0) {
      CHECK(client.acknowledge(id, "s1"));
      return;
    }
    std::lock_guard<std::mutex> lock(mu);
    later.emplace_back(i, who);  // s2's, or a reply that beat send() returning the token
  });
  tmc::MessageManifest reliable;
  reliable.reliability = true;
  std::vector<std::future<tmc::DeliveryOutcome>> outcomes(kRequests);
  auto take_later = [&] {
    std::vector<std::pair<int, std::string>> now;
    {
      std::lock_guard<std::mutex> lock(mu);
      now.swap(later);
    }
    for (const auto& [i, who] : now) {
      const std::uint64_t id = ids[static_cast<std::size_t>(i)].load();
      REQUIRE(id != 0);
      CHECK(client.acknowledge(id, who));
      if (who == "s2") CHECK(client.acknowledge(id, who));
    }
  };
  for (int i = 0; i < kRequests; ++i) {
    const std::string text = "req " + std::to_string(i);
    tmc::MessageToken id = 0;
    REQUIRE(client.send(std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), reliable,
                        &outcomes[static_cast<std::size_t>(i)], &id));
    ids[static_cast<std::size_t>(i)].store(id);
    if (i % 8 == 7) take_later();
  }
  for (int i = 0; i < kRequests; ++i) {
    auto& f = outcomes[static_cast<std::size_t>(i)];
    for (int t = 0; t < 1000 && f.wait_for(10ms) != std::future_status::ready; ++t) take_later();
    REQUIRE(f.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    const tmc::DeliveryOutcome o = f.get();
    CHECK(o.state == tmc::DeliveryOutcome::State::met);
    std::vector<std::string> acked = o.acked;
    std::sort(acked.begin(), acked.end());
    CHECK(acked == std::vector<std::string>{"s1", "s2"});
  }
  CHECK(client.stats().counter("reliability.met") == kRequests);
  CHECK(s1.stats().counter("reliability.acks_sent") == 0);
}

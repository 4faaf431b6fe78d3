// tmc_group_order_members: two (or more) libTMC members in one process, each with its own
// UDP socket, on a group-ordered channel sequenced by a real tmc-sequencer process.
//
//   tmc_group_order_members --sequencer IP:PORT --group IP:PORT [--members N] [--messages K]
//                           [--timeout-s S]
//
// Each member runs the pipeline [ordering.group(network_sequencer), ordering.seq] over a
// socket bound to the group port (SO_REUSEPORT) and joined to the group on 127.0.0.1. All
// members send K messages concurrently (interleaved); each must then deliver all N*K
// messages — its own included, as they come back stamped — and every member's sequence
// must be identical. Exit 0 on success, 1 with a message otherwise.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/pipeline.hpp"
#include "sim/network.hpp"
#include "tmc/packet.hpp"

namespace {

struct Member;

class Sink final : public tmc::PipelineSink {
 public:
  explicit Sink(Member& m) : m_(m) {}
  void transmit(tmc::Packet* p) noexcept override;
  void deliver(tmc::Packet* p) noexcept override;
  void on_event(const tmc::Event& e) noexcept override;

 private:
  Member& m_;
};

struct Member {
  int fd = -1;
  sockaddr_in group{};
  std::unique_ptr<tmc::PacketPool> pool;
  std::unique_ptr<Sink> sink;
  std::unique_ptr<tmc::Pipeline> pipeline;
  std::vector<std::string> delivered;
  unsigned long events = 0;
};

void Sink::transmit(tmc::Packet* p) noexcept {
  sockaddr_in to = m_.group;
  if (p->dst_ip != 0) {
    to.sin_addr.s_addr = htonl(p->dst_ip);
    to.sin_port = htons(p->dst_port);
  }
  (void)sendto(m_.fd, p->data(), p->len, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  p->release();
}
void Sink::deliver(tmc::Packet* p) noexcept {
  m_.delivered.emplace_back(reinterpret_cast<const char*>(p->payload()), p->payload_len);
  p->release();
}
void Sink::on_event(const tmc::Event& e) noexcept {
  ++m_.events;
  std::fprintf(stderr, "event %s seq %llu count %llu\n", std::string(tmc::event_type_name(e.type)).c_str(),
               static_cast<unsigned long long>(e.seq), static_cast<unsigned long long>(e.count));
}

bool parse(const std::string& s, sockaddr_in& a) {
  const auto c = s.rfind(':');
  if (c == std::string::npos) return false;
  std::memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(s.substr(c + 1))));
  return inet_pton(AF_INET, s.substr(0, c).c_str(), &a.sin_addr) == 1;
}

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

}  // namespace

int main(int argc, char** argv) {
  std::string sequencer;
  std::string group;
  int members = 2;
  int messages = 200;
  int timeout_s = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const std::string v = argv[i + 1];
    if (k == "--sequencer") sequencer = v;
    else if (k == "--group") group = v;
    else if (k == "--members") members = std::stoi(v);
    else if (k == "--messages") messages = std::stoi(v);
    else if (k == "--timeout-s") timeout_s = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 1;
    }
  }
  sockaddr_in group_addr{};
  sockaddr_in seq_addr{};
  if (!parse(group, group_addr) || !parse(sequencer, seq_addr)) {
    std::fprintf(stderr, "usage: %s --sequencer IP:PORT --group IP:PORT [--members N] [--messages K]\n", argv[0]);
    return 1;
  }

  std::vector<std::unique_ptr<Member>> ms;
  for (int i = 0; i < members; ++i) {
    auto m = std::make_unique<Member>();
    m->group = group_addr;
    m->fd = socket(AF_INET, SOCK_DGRAM, 0);
    const int one = 1;
    setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(m->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in bind_addr = group_addr;
    bind_addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(m->fd, reinterpret_cast<const sockaddr*>(&bind_addr), sizeof bind_addr) != 0) {
      std::perror("bind");
      return 1;
    }
    ip_mreqn mreq{};
    mreq.imr_multiaddr = group_addr.sin_addr;
    inet_pton(AF_INET, "127.0.0.1", &mreq.imr_address);
    if (setsockopt(m->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
      std::perror("IP_ADD_MEMBERSHIP");
      return 1;
    }
    setsockopt(m->fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof mreq);
    m->pool = std::make_unique<tmc::PacketPool>(2048, 64, 16384);
    m->sink = std::make_unique<Sink>(*m);
    tmc::Plan plan = tmc::sim::make_plan(
        {tmc::sim::stage("ordering.group", {{"network_sequencer", sequencer}, {"hold_us", "200000"}}),
         tmc::sim::stage("ordering.seq")},
        "group-order-loopback");
    plan.traits.network_sequenced = true;
    plan.member = "m" + std::to_string(i);
    tmc::StageEnv env;
    env.channel = plan.channel_hash;
    env.sender = 1000 + static_cast<std::uint32_t>(i);
    env.epoch = static_cast<std::uint32_t>(now_ns()) | 1u;
    env.seed = 7 + static_cast<std::uint64_t>(i);
    env.max_payload_bytes = 1200;
    const tmc::Status st = tmc::Pipeline::build(plan, tmc::Registry::builtin(), env, *m->pool, *m->sink, m->pipeline);
    if (!st.is_ok()) {
      std::fprintf(stderr, "pipeline: %s\n", st.message().c_str());
      return 1;
    }
    m->pipeline->start(now_ns());
    ms.push_back(std::move(m));
  }

  const std::uint64_t deadline = now_ns() + static_cast<std::uint64_t>(timeout_s) * 1'000'000'000ull;
  int sent = 0;
  std::uint64_t next_send = now_ns();
  const std::size_t want = static_cast<std::size_t>(members) * static_cast<std::size_t>(messages);
  auto done = [&] {
    for (auto& m : ms) {
      if (m->delivered.size() < want) return false;
    }
    return true;
  };
  while (!done() && now_ns() < deadline) {
    // Interleave: one message from every member every 200 us.
    if (sent < messages && now_ns() >= next_send) {
      for (int i = 0; i < members; ++i) {
        tmc::Packet* p = ms[static_cast<std::size_t>(i)]->pool->alloc();
        if (p == nullptr) continue;
        const std::string text = "m" + std::to_string(i) + " " + std::to_string(sent);
        p->reset_for_send(static_cast<std::uint32_t>(text.size()));
        std::memcpy(p->payload(), text.data(), text.size());
        ms[static_cast<std::size_t>(i)]->pipeline->send(p, now_ns());
      }
      ++sent;
      next_send = now_ns() + 200'000;
    }
    std::vector<pollfd> pfds;
    for (auto& m : ms) pfds.push_back(pollfd{m->fd, POLLIN, 0});
    (void)poll(pfds.data(), pfds.size(), 1);
    for (std::size_t i = 0; i < ms.size(); ++i) {
      Member& m = *ms[i];
      for (;;) {
        tmc::Packet* p = m.pool->alloc();
        if (p == nullptr) break;
        p->reset_for_receive();
        const ssize_t n = recv(m.fd, p->buf, p->cap, MSG_DONTWAIT);
        if (n <= 0) {
          p->release();
          break;
        }
        p->len = static_cast<std::uint32_t>(n);
        m.pipeline->receive(p, now_ns());
      }
      const std::uint64_t d = m.pipeline->next_deadline_ns();
      if (d != 0 && d <= now_ns()) m.pipeline->tick(now_ns());
    }
  }
  int rc = 0;
  for (std::size_t i = 0; i < ms.size(); ++i) {
    std::printf("member %zu delivered %zu of %zu, %lu events\n", i, ms[i]->delivered.size(), want, ms[i]->events);
    if (ms[i]->delivered.size() != want) rc = 1;
    if (ms[i]->delivered != ms[0]->delivered) {
      std::printf("member %zu's sequence differs from member 0's\n", i);
      rc = 1;
    }
  }
  for (auto& m : ms) {
    m->pipeline->stop(now_ns());
    m->pipeline.reset();
    close(m->fd);
  }
  std::printf(rc == 0 ? "PASS: identical total order\n" : "FAIL\n");
  return rc;
}

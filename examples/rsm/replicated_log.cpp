// A replicated state machine on a group-ordered, reliable libTMC channel.
//
// Three replicas each hold a state and a log. Every replica proposes commands by sending
// them to the group; the channel delivers every command to every replica (the proposer
// included) in one total order, and each replica applies them in that order. The state
// function is deliberately order-sensitive (state = state * 31 + x), so two replicas end
// with the same state only if they applied the same commands in the same order.
//
// The replicas run in one process, each on its own Runtime (its own loop thread and
// socket), standing in for three processes; run three copies with --replica to use real
// processes.
//
//   tmc-rsm [--manifest examples/manifests/rsm.yaml] [--commands 200] [--port P]
//
// Exit status 0 when every replica applied the same log; 1 otherwise.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <tmc/channel.hpp>

namespace {

using namespace std::chrono_literals;

struct Replica {
  std::string name;
  tmc::Channel channel;
  std::mutex mu;
  std::vector<std::string> log;
  std::uint64_t state = 7;

  void apply(const tmc::Message& m) {
    std::lock_guard<std::mutex> lock(mu);
    const std::string cmd(m.text());
    log.push_back(cmd);
    std::uint64_t x = 0;
    for (char c : cmd) x = x * 131 + static_cast<unsigned char>(c);
    state = state * 31 + x;
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string manifest_path = TMC_RSM_MANIFEST;
  int commands = 200;
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--manifest") manifest_path = argv[i + 1];
    else if (k == "--commands") commands = std::atoi(argv[i + 1]);
    else if (k == "--port") port = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: tmc-rsm [--manifest FILE] [--commands N] [--port P]\n");
      return 2;
    }
  }
  tmc::Manifest base;
  tmc::Diagnostics diag;
  if (!tmc::load_manifest(manifest_path, base, diag)) {
    std::fprintf(stderr, "%s", diag.to_string().c_str());
    return 1;
  }
  if (port != 0) base.port = port;

  const std::vector<std::string> names = {"r1", "r2", "r3"};
  std::vector<std::unique_ptr<Replica>> replicas;
  try {
    for (const auto& n : names) {
      auto r = std::make_unique<Replica>();
      r->name = n;
      tmc::Manifest m = base;
      m.name = n;
      tmc::OpenOptions o;
      o.runtime = tmc::Runtime::create();
      r->channel = tmc::Channel::open(m, o);
      Replica* self = r.get();
      r->channel.on_message([self](tmc::Message&& msg) { self->apply(msg); });
      replicas.push_back(std::move(r));
    }
  } catch (const tmc::Error& e) {
    std::fprintf(stderr, "tmc-rsm: %s\n", e.what());
    return 1;
  }
  std::printf("plan of r1:\n%s\n", replicas[0]->channel.plan().to_string().c_str());
  for (auto& r : replicas) {
    if (tmc::Status s = r->channel.wait_for_members(names.size() - 1, 10s); !s) {
      std::fprintf(stderr, "tmc-rsm: %s: %s\n", r->name.c_str(), s.to_string().c_str());
      return 1;
    }
  }

  // Every replica proposes concurrently, so commands from different replicas race on the
  // network: only the channel's total order makes the logs agree.
  std::vector<std::thread> proposers;
  for (auto& r : replicas) {
    proposers.emplace_back([&r, commands] {
      for (int i = 0; i < commands; ++i) {
        const std::string cmd = r->name + ":" + std::to_string(i);
        if (tmc::Status s = r->channel.send(cmd); !s) std::fprintf(stderr, "send: %s\n", s.to_string().c_str());
      }
    });
  }
  for (auto& t : proposers) t.join();

  const std::size_t expect = names.size() * static_cast<std::size_t>(commands);
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    bool done = true;
    for (auto& r : replicas) {
      std::lock_guard<std::mutex> lock(r->mu);
      done = done && r->log.size() >= expect;
    }
    if (done || std::chrono::steady_clock::now() > give_up) break;
    std::this_thread::sleep_for(10ms);
  }
  for (auto& r : replicas) r->channel.close();

  bool same = true;
  for (auto& r : replicas) {
    std::printf("%s: applied %zu commands, state %016" PRIx64 "\n", r->name.c_str(), r->log.size(), r->state);
    same = same && r->log == replicas[0]->log && r->log.size() == expect;
  }
  if (!same) {
    std::printf("RESULT: FAIL: the replicas' logs differ (or are incomplete: expected %zu commands each)\n", expect);
    return 1;
  }
  std::printf("RESULT: OK: all %zu replicas applied the same %zu commands in the same order\n", replicas.size(),
              expect);
  return 0;
}

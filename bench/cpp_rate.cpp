// The C++ half of the Python bindings' rate benchmark (bench/python_rate.py is the other):
// one process, one sender channel and one receiver channel on one multicast group on
// loopback, both on the default runtime. The loop sends a window of messages, then
// receives that window, and repeats; the rate is messages received per second of the
// timed part. python_rate.py runs exactly the same loop through the Python API, so the
// ratio of the two numbers is the cost of the bindings.
//
//   tmc-cpp-rate [--count 200000] [--window 64] [--size 1024] [--group 239.255.77.1] [--port 47801]
//
// Prints one line: "cpp: <received> of <sent> messages of <size> B in <s> s: <rate> msg/s".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <tmc/channel.hpp>

namespace {

long arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  }
  return fallback;
}

std::string sarg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

tmc::Value manifest(const std::string& group, long port, const char* name) {
  return tmc::Value(tmc::Value::Map{{"id", "rate"},
                                    {"name", name},
                                    {"group", group},
                                    {"port", static_cast<std::int64_t>(port)}});
}

}  // namespace

int main(int argc, char** argv) {
  const long count = arg(argc, argv, "--count", 200000);
  const long window = arg(argc, argv, "--window", 64);
  const long size = arg(argc, argv, "--size", 1024);
  const long port = arg(argc, argv, "--port", 47801);
  const std::string group = sarg(argc, argv, "--group", "239.255.77.1");
  try {
    tmc::Channel rx = tmc::Channel::open(manifest(group, port, "rx"));
    tmc::Channel tx = tmc::Channel::open(manifest(group, port, "tx"));
    const std::vector<std::uint8_t> payload(static_cast<std::size_t>(size), 0x5a);
    long sent = 0;
    long received = 0;
    // One round: send a window, then take what arrives of it (a lost datagram only costs
    // the short wait below; the count of received messages says if any were lost).
    auto round = [&](long n) {
      for (long i = 0; i < n; ++i) {
        if (!tx.send(std::span<const std::uint8_t>(payload)).is_ok()) return false;
        ++sent;
      }
      for (long i = 0; i < n; ++i) {
        auto m = rx.receive(std::chrono::milliseconds(200));
        if (!m) break;
        ++received;
      }
      return true;
    };
    for (long done = 0; done < count / 10; done += window) round(window);  // warm-up
    sent = received = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (long done = 0; done < count; done += window) {
      if (!round(window)) {
        std::fprintf(stderr, "cpp_rate: send failed\n");
        return 1;
      }
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("cpp: %ld of %ld messages of %ld B in %.3f s: %.0f msg/s\n", received, sent, size, s,
                static_cast<double>(received) / s);
    rx.close();
    tx.close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpp_rate: %s\n", e.what());
    return 1;
  }
  return 0;
}

// tapir-kv: TAPIR-KV replicas and closed-loop clients over libTMC channels or TCP.
//
//   tapir-kv inproc  --variant V [--clients N] [--loss PCT] [--seconds D] ...   everything in one process
//   tapir-kv replica --variant V --index I --replicas IP,IP,IP --client-ips IP,...   serve until SIGTERM
//   tapir-kv client  --variant V --index J --replicas IP,IP,IP --client-ips IP,... [--seconds D]
//
// Variants: tcp (one stream per client-replica pair), and the libTMC variants udp, mcast
// and tuned, each compiled from manifests/<variant>.yaml (or --manifest FILE). Every
// process prints its configuration, IR timers and compiled plans at start, and writes a
// JSON report (--out FILE, default stdout) at the end; scripts/tapir/summarize.py turns
// reports into the matrix's CSV, Markdown and chart.
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "host.hpp"
#include "keys.hpp"

#ifndef TAPIR_MANIFEST_DIR
#define TAPIR_MANIFEST_DIR "manifests"
#endif

namespace {

using namespace tapir;

struct Options {
  std::string mode;
  std::string variant = "tuned";
  std::string manifest;
  std::uint32_t index = 0;
  std::uint32_t clients = 1;
  std::vector<std::string> replica_ips;
  std::vector<std::string> client_ips;
  std::string interface;
  int base_port = 31000;
  double loss_pct = 0;  ///< inproc: the faults stage's loss on every channel; else recorded as given
  std::string loss_model = "none";
  double seconds = 5;
  std::size_t keys = 100000;
  int ops = 2;
  double put = 0.5;
  IrTimers timers;
  std::string rules = "repo";
  std::uint64_t seed = 1;
  std::string out;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "tapir-kv: " << why << "\n"
            << "usage: tapir-kv inproc|replica|client --variant tcp|udp|mcast|tuned|tuned-flagged [--manifest FILE]\n"
               "         [--index I] [--clients N] [--replicas IP,IP,IP] [--client-ips IP,...] [--interface IF]\n"
               "         [--base-port P] [--loss PCT] [--loss-model TEXT] [--seconds D] [--keys K] [--ops L]\n"
               "         [--put FRACTION] [--propose-ms MS] [--slow-path-ms MS] [--finalize-ms MS] [--get-ms MS]\n"
               "         [--sync-lite-ms MS] [--rules repo|paper] [--seed S] [--out FILE]\n";
  std::exit(2);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');)
    if (!x.empty()) v.push_back(x);
  return v;
}

Options parse(int argc, char** argv) {
  if (argc < 2) usage("no mode");
  Options o;
  o.mode = argv[1];
  if (o.mode != "inproc" && o.mode != "replica" && o.mode != "client") usage("unknown mode '" + o.mode + "'");
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage("option " + k + " needs a value");
    const std::string v = argv[++i];
    auto ms = [&] { return static_cast<Nanos>(std::stod(v) * 1e6); };
    if (k == "--variant") o.variant = v;
    else if (k == "--manifest") o.manifest = v;
    else if (k == "--index") o.index = static_cast<std::uint32_t>(std::stoul(v));
    else if (k == "--clients") o.clients = static_cast<std::uint32_t>(std::stoul(v));
    else if (k == "--replicas") o.replica_ips = split(v);
    else if (k == "--client-ips") o.client_ips = split(v);
    else if (k == "--interface") o.interface = v;
    else if (k == "--base-port") o.base_port = std::stoi(v);
    else if (k == "--loss") o.loss_pct = std::stod(v);
    else if (k == "--loss-model") o.loss_model = v;
    else if (k == "--seconds") o.seconds = std::stod(v);
    else if (k == "--keys") o.keys = std::stoul(v);
    else if (k == "--ops") o.ops = std::stoi(v);
    else if (k == "--put") o.put = std::stod(v);
    else if (k == "--propose-ms") o.timers.propose_resend = ms();
    else if (k == "--slow-path-ms") o.timers.slow_path = ms();
    else if (k == "--finalize-ms") o.timers.finalize_resend = ms();
    else if (k == "--get-ms") o.timers.get_timeout = ms();
    else if (k == "--sync-lite-ms") o.timers.sync_lite = ms();
    else if (k == "--rules") o.rules = v;
    else if (k == "--seed") o.seed = std::stoull(v);
    else if (k == "--out") o.out = v;
    else usage("unknown option " + k);
  }
  // tcp, or a libTMC variant: manifests/<variant>.yaml unless --manifest names another file
  // (udp, mcast, tuned; tuned-flagged is tuned with per-message reliability).
  if (o.manifest.empty() && o.variant != "tcp") o.manifest = std::string(TAPIR_MANIFEST_DIR) + "/" + o.variant + ".yaml";
  if (o.variant != "tcp" && !std::ifstream(o.manifest)) usage("no manifest " + o.manifest + " for variant '" + o.variant + "'");
  if (o.rules != "repo" && o.rules != "paper") usage("--rules is repo or paper");
  if (o.mode == "inproc") {
    o.replica_ips.assign(3, "127.0.0.1");
    o.client_ips.assign(o.clients, "127.0.0.1");
    if (o.loss_pct > 0) o.loss_model = "faults stage, send side of every channel (in-process)";
    if (o.variant == "tcp" && o.loss_pct > 0) usage("in-process TCP has no loss injection: use the netns runner");
  } else {
    if (o.replica_ips.size() != 3) usage("--replicas needs 3 addresses");
    if (o.client_ips.empty()) usage("--client-ips needs the clients' addresses");
    o.clients = static_cast<std::uint32_t>(o.client_ips.size());
  }
  return o;
}

// --- the report ----------------------------------------------------------------------

class Json {
 public:
  explicit Json(std::ostream& out) : out_(out) {}
  Json& key(const std::string& k) {
    sep();
    out_ << '"' << k << "\":";
    fresh_ = true;
    return *this;
  }
  template <class T>
  Json& val(const T& v) {
    sep();
    if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, const char*>) out_ << '"' << escape(v) << '"';
    else if constexpr (std::is_same_v<T, bool>) out_ << (v ? "true" : "false");
    else out_ << v;
    return *this;
  }
  Json& open(char c) {
    sep();
    out_ << c;
    fresh_ = true;
    return *this;
  }
  Json& close(char c) {
    out_ << c;
    fresh_ = false;
    return *this;
  }
  template <class T>
  Json& field(const std::string& k, const T& v) {
    key(k);
    return val(v);
  }

 private:
  static std::string escape(const std::string& s) {
    std::string r;
    for (char ch : s) {
      if (ch == '"' || ch == '\\') r += '\\';
      if (ch == '\n') {
        r += "\\n";
        continue;
      }
      r += ch;
    }
    return r;
  }
  void sep() {
    if (!fresh_) out_ << ',';
    fresh_ = false;
  }
  std::ostream& out_;
  bool fresh_ = true;
};

Nanos percentile(std::vector<Nanos> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void op_latency(Json& j, const std::string& name, const std::vector<Nanos>& v) {
  j.key(name).open('{');
  j.field("count", v.size()).field("p50_us", percentile(v, 0.5) / 1000).field("p99_us", percentile(v, 0.99) / 1000);
  j.close('}');
}

void counters_by_type(Json& j, const std::string& name, const std::array<std::uint64_t, kMsgTypes>& a) {
  j.key(name).open('{');
  for (int t = 1; t < kMsgTypes; ++t) j.field(msg_type_name(static_cast<MsgType>(t)), a[t]);
  j.close('}');
}

void report(const Options& o, Host& host, Nanos run_start, Nanos run_end, std::ostream& out) {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  Json j(out);
  j.open('{');
  j.field("mode", o.mode).field("variant", o.variant).field("manifest", o.manifest).field("index", o.index);
  j.field("n", 3).field("clients", o.clients).field("ops_per_txn", o.ops).field("put_fraction", o.put);
  j.field("keys", o.keys).field("value_bytes", 64).field("seconds", o.seconds);
  j.field("loss_pct", o.loss_pct).field("loss_model", o.loss_model).field("rules", o.rules).field("seed", o.seed);
  j.key("timers_ms").open('{');
  j.field("propose_resend", static_cast<double>(o.timers.propose_resend) / 1e6)
      .field("slow_path", static_cast<double>(o.timers.slow_path) / 1e6)
      .field("finalize_resend", static_cast<double>(o.timers.finalize_resend) / 1e6)
      .field("get_timeout", static_cast<double>(o.timers.get_timeout) / 1e6)
      .field("sync_lite", static_cast<double>(o.timers.sync_lite) / 1e6);
  j.close('}');
  j.field("run_start_ns", run_start).field("run_end_ns", run_end).field("cpu_s", cpu);
  const TransportStats ts = host.stats();
  j.key("transport").open('{');
  j.field("datagrams_sent", ts.datagrams_sent).field("datagrams_received", ts.datagrams_received);
  j.field("injected_drops", ts.injected_drops).field("channel_retransmits", ts.retransmits).field("send_errors", ts.send_errors);
  j.field("acks_sent", ts.acks_sent).field("heartbeats_sent", ts.heartbeats_sent);
  j.field("replies_acked", ts.replies_acked);
  j.field("timeouts", ts.timeouts).field("nacks_sent", ts.nacks_sent).field("duplicates", ts.duplicates);
  j.close('}');
  j.key("client_reports").open('[');
  for (Client* c : host.clients()) {
    const ClientStats& s = c->stats();
    j.open('{');
    j.field("index", c->config().index).field("started", s.started).field("committed", s.committed);
    j.field("aborted_fail", s.aborted_fail).field("aborted_retries", s.aborted_retries);
    j.field("get_timeouts", s.get_timeouts).field("get_fails", s.get_fails);
    j.field("prepare_attempts", s.prepare_attempts).field("retries", s.retries);
    j.field("fast_path", s.fast_path).field("slow_path", s.slow_path).field("slow_path_timer", s.slow_path_timer);
    counters_by_type(j, "sent", s.sent);
    counters_by_type(j, "resent", s.resent);
    op_latency(j, "get_latency", s.get_latency);
    op_latency(j, "prepare_latency", s.prepare_latency);
    op_latency(j, "commit_latency", s.commit_latency);
    // Every finished txn: end time, latency (ns), outcome (0 committed, 1 FAIL, 2 retries).
    j.key("txns").open('[');
    for (const TxnRecord& t : c->txns()) {
      j.open('[');
      j.val(t.end).val(t.latency).val(static_cast<int>(t.outcome));
      j.close(']');
    }
    j.close(']');
    j.close('}');
  }
  j.close(']');
  j.key("replica_reports").open('[');
  for (Replica* r : host.replicas()) {
    const ReplicaStats& s = r->stats();
    j.open('{');
    j.field("index", r->index()).field("prepared_left", r->store().prepared_count()).field("record", r->record_size());
    j.field("duplicates", s.duplicates).field("early_finalizes", s.early_finalizes).field("malformed", s.malformed);
    counters_by_type(j, "received", s.received);
    j.key("prepare_checks").open('{');
    for (int c = 0; c < 8; ++c) j.field(prepare_check_name(static_cast<PrepareCheck>(c)), s.prepare_checks[c]);
    j.close('}');
    j.close('}');
  }
  j.close(']');
  j.close('}');
  out << "\n";
}

void print_summary(const Options& o, Host& host, Nanos start, Nanos end) {
  std::uint64_t committed = 0, started = 0, fail = 0, retries = 0, fast = 0, slow = 0, get_to = 0, resent = 0;
  std::vector<Nanos> lat;
  for (Client* c : host.clients()) {
    const ClientStats& s = c->stats();
    committed += s.committed;
    started += s.started;
    fail += s.aborted_fail;
    retries += s.aborted_retries;
    fast += s.fast_path;
    slow += s.slow_path;
    get_to += s.get_timeouts;
    for (auto v : s.resent) resent += v;
    for (const auto& t : c->txns())
      if (t.outcome == Outcome::committed) lat.push_back(t.latency);
  }
  const double secs = static_cast<double>(end - start) / 1e9;
  std::cerr << "tapir-kv " << o.variant << ": " << o.clients << " clients, loss " << o.loss_pct << "%, " << secs
            << " s: " << static_cast<double>(committed) / secs << " committed txn/s; aborts FAIL " << fail
            << " retries " << retries << " of " << started << "; GET timeouts " << get_to << "; fast/slow " << fast << "/"
            << slow << "; IR resends " << resent << "; latency p50 " << percentile(lat, 0.5) / 1000 << " us p99 "
            << percentile(lat, 0.99) / 1000 << " us\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  // Replicas wait for SIGINT/SIGTERM with sigwait: block them before any thread starts.
  if (o.mode == "replica" && o.variant != "tcp") {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  HostOptions ho;
  ho.topo.replica_ips = o.replica_ips;
  ho.topo.client_ips = o.client_ips;
  ho.topo.interface = o.interface;
  ho.topo.base_port = o.base_port;
  ho.manifest_path = o.manifest;
  ho.inject_loss = o.mode == "inproc" ? o.loss_pct / 100.0 : 0;
  ho.seed = o.seed;

  std::cerr << "tapir-kv " << o.mode << " variant=" << o.variant << " manifest=" << (o.manifest.empty() ? "-" : o.manifest)
            << " n=3 clients=" << o.clients << " L=" << o.ops << " put=" << o.put << " keys=" << o.keys
            << " value=64B seconds=" << o.seconds << " loss=" << o.loss_pct << "% (" << o.loss_model << ")"
            << " rules=" << o.rules << " seed=" << o.seed << "\n"
            << "IR timers: propose resend " << o.timers.propose_resend / kMillisecond << " ms, fast->slow path "
            << o.timers.slow_path / kMillisecond << " ms, finalize resend " << o.timers.finalize_resend / kMillisecond
            << " ms, unlogged GET " << o.timers.get_timeout / kMillisecond << " ms (single shot), sync-lite "
            << o.timers.sync_lite / kMillisecond << " ms\n";

  std::unique_ptr<Host> host;
  try {
    host = o.variant == "tcp" ? make_tcp_host(ho) : make_tmc_host(ho);
  } catch (const std::exception& e) {
    std::cerr << "tapir-kv: " << e.what() << "\n";
    return 1;
  }
  const std::vector<std::string> keys = make_keys(o.keys);
  StoreOptions so;
  so.rules = o.rules == "paper" ? PrepareRules::paper : PrepareRules::repo;
  auto add_client = [&](std::uint32_t j) {
    Client::Config cfg;
    cfg.index = j;
    cfg.clientid = (o.seed << 20) ^ (0x9E3779B97F4A7C15ULL * (j + 1)) ^ static_cast<std::uint64_t>(mono_now());
    if (cfg.clientid == 0) cfg.clientid = 1;
    cfg.timers = o.timers;
    cfg.workload.keys = &keys;
    cfg.workload.ops_per_txn = o.ops;
    cfg.workload.put_fraction = o.put;
    cfg.seed = o.seed * 7919 + j;
    host->add_client(cfg);
  };
  try {
    if (o.mode != "client")
      for (std::uint32_t i = 0; i < 3; ++i) {
        if (o.mode == "replica" && i != o.index) continue;
        Replica& r = host->add_replica(i, so);
        for (const auto& k : keys) r.store().load(k, "null");
      }
    if (o.mode == "inproc")
      for (std::uint32_t j = 0; j < o.clients; ++j) add_client(j);
    if (o.mode == "client") add_client(o.index);
  } catch (const std::exception& e) {
    std::cerr << "tapir-kv: " << e.what() << "\n";
    return 1;
  }
  std::cerr << host->plans();
  if (!host->connect(10'000 * kMillisecond)) {
    std::cerr << "tapir-kv: endpoints did not connect within 10 s\n";
    return 1;
  }
  std::cerr << "tapir-kv: ready\n";
  Nanos start = mono_now(), end = start;
  if (o.mode == "replica") {
    host->serve_until_signal();
  } else {
    host->run_clients(o.seconds);
    end = mono_now();
  }
  if (o.mode != "replica") print_summary(o, *host, start, end);
  if (o.out.empty()) {
    report(o, *host, start, end, std::cout);
  } else {
    std::ofstream f(o.out);
    report(o, *host, start, end, f);
  }
  return 0;
}

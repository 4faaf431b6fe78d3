// tmc: the libTMC command-line tool.
//
//   tmc plan MANIFEST.yaml [--caps CAPS.yaml] [--module FILE.so]... [--repo DIR --trust FILE]
//                                               print the compiled plan, or every problem (exit 1)
//   tmc check MANIFEST.yaml [--caps CAPS.yaml]  validate a manifest (and a capability file)
//   tmc properties [--markdown]                 the manifest property table (docs/manifest.md)
//   tmc capabilities [--markdown]               the capability key table (docs/capabilities.md)
//   tmc stages [--markdown]                     the registered stage kinds (docs/stages.md)
//   tmc run --manifest M.yaml [--name N] -- PROGRAM ARGS...
//                                               run an unmodified UDP program over libTMC (docs/retrofit.md)
//   tmc stat [--json|--prometheus|--watch|--clean]  live counters of running processes (docs/operations.md)
//   tmc modules keygen|sign|verify|list|info    operate a signed module repository (docs/modules.md)
//
// Exit status: 0 success, 1 the input has problems (all of them are printed), 2 usage.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include "runtime/manifest/internal.hpp"
#include "runtime/manifest/yaml_value.hpp"
#include "tmc/capabilities.hpp"
#include "tmc/manifest.hpp"
#include "tmc/modules.hpp"
#include "tmc/stage.hpp"
#include "tmc_modules.hpp"
#include "tmc_stat.hpp"
#include "tmc_run.hpp"

namespace {

int print_problems(const tmc::Diagnostics& diag) {
  std::cerr << diag.to_string() << "\n";
  return 1;
}

// An empty path means "no capability file": the defaults hold.
bool load_caps(const std::string& path, tmc::Capabilities& caps) {
  if (path.empty()) {
    caps = tmc::Capabilities::defaults();
    return true;
  }
  tmc::Diagnostics diag;
  if (tmc::load_capabilities(path, caps, diag)) return true;
  print_problems(diag);
  return false;
}

int run_plan(const std::string& manifest_path, const std::string& caps_path, const std::vector<std::string>& modules,
             const tmc_tool::PlanRepositoryOptions& repo) {
  tmc::Capabilities caps;
  if (!load_caps(caps_path, caps)) return 1;
  // Module objects named on the command line (unverified: the operator vouches for them).
  tmc::ModuleSet set;
  for (const std::string& path : modules) {
    if (tmc::Status s = set.load(path); !s) {
      std::cerr << s.to_string() << "\n";
      return 1;
    }
  }
  if (!tmc_tool::load_plan_modules(manifest_path, repo, set)) return 1;
  tmc::Diagnostics diag;
  std::string text;
  if (!tmc::detail::read_text_file(manifest_path, text, diag)) return print_problems(diag);
  std::string out;
  if (!tmc::detail::render_plan(text, manifest_path, caps, set.registry(), out)) {
    std::cerr << out;
    return 1;
  }
  std::cout << out;
  return 0;
}

int run_check(const std::string& manifest_path, const std::string& caps_path) {
  tmc::Capabilities caps;
  if (!load_caps(caps_path, caps)) return 1;
  tmc::Manifest m;
  tmc::Diagnostics diag;
  if (!tmc::load_manifest(manifest_path, m, diag)) return print_problems(diag);
  std::cout << manifest_path << ": ok";
  if (!caps_path.empty()) std::cout << " (" << caps_path << ": ok)";
  std::cout << "\n";
  return 0;
}

int run_stages(bool markdown) {
  const tmc::Registry& r = tmc::Registry::builtin();
  if (markdown) {
    std::cout << tmc::stages_markdown(r);
    return 0;
  }
  for (const tmc::StageInfo* info : r.all()) std::cout << info->kind << "  " << info->synopsis << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tmc: compile and inspect libTMC channel manifests"};
  app.require_subcommand(1);

  std::string manifest_path;
  std::string caps_path;
  auto* plan = app.add_subcommand("plan", "Print the plan a manifest compiles to (or every problem, exit 1)");
  plan->add_option("manifest", manifest_path, "manifest YAML file")->required();
  plan->add_option("--caps", caps_path, "capability YAML file (default: no offloads, MTU 1500, multicast)");
  std::vector<std::string> module_paths;
  plan->add_option("--module", module_paths, "load this module object first (repeatable; not verified)");
  tmc_tool::PlanRepositoryOptions plan_repo;
  tmc_tool::add_plan_repository_options(plan, plan_repo);

  auto* check = app.add_subcommand("check", "Validate a manifest (and a capability file)");
  check->add_option("manifest", manifest_path, "manifest YAML file")->required();
  check->add_option("--caps", caps_path, "capability YAML file to validate as well");

  bool markdown = false;
  auto* properties = app.add_subcommand("properties", "Print the manifest property table");
  properties->add_flag("--markdown", markdown, "as a Markdown table (docs/manifest.md)");
  auto* capabilities = app.add_subcommand("capabilities", "Print the capability file keys");
  capabilities->add_flag("--markdown", markdown, "as a Markdown table (docs/capabilities.md)");
  auto* stages = app.add_subcommand("stages", "Print the registered stage kinds");
  stages->add_flag("--markdown", markdown, "as Markdown (docs/stages.md)");

  tmc_tool::RunOptions run_opts;
  auto* run = app.add_subcommand("run", "Run an unmodified UDP program with its sockets rewired onto libTMC");
  run->add_option("--manifest", run_opts.manifest, "manifest YAML file with a 'retrofit:' section")->required();
  run->add_option("--name", run_opts.name, "member name of the program's first rewired socket");
  run->add_option("command", run_opts.command, "the program and its arguments (after --)")->required();
  tmc_tool::StatOptions stat_opts;
  auto* stat = tmc_tool::add_stat_command(app, stat_opts);
  tmc_tool::ModulesOptions modules_opts;
  auto* modules = tmc_tool::add_modules_command(app, modules_opts);

  // CLI11 alone would say only "A subcommand is required" for a misspelt one.
  const std::vector<CLI::App*> subcommands = app.get_subcommands([](CLI::App*) { return true; });
  if (argc > 1 && argv[1][0] != '-' &&
      std::none_of(subcommands.begin(), subcommands.end(), [&](CLI::App* sub) { return sub->check_name(argv[1]); })) {
    std::string known;
    for (const CLI::App* sub : subcommands) known += (known.empty() ? "" : ", ") + sub->get_name();
    std::cerr << "tmc: unknown subcommand '" << argv[1] << "' (known: " << known << ")\n"
              << "Run with --help for more information.\n";
    return 2;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    if (plan->parsed()) return run_plan(manifest_path, caps_path, module_paths, plan_repo);
    if (check->parsed()) return run_check(manifest_path, caps_path);
    if (properties->parsed()) {
      const auto& rows = tmc::manifest_properties();
      std::cout << (markdown ? tmc::detail::properties_markdown(rows) : tmc::detail::properties_text(rows));
      return 0;
    }
    if (capabilities->parsed()) {
      const auto rows = tmc::detail::capability_properties();
      std::cout << (markdown ? tmc::detail::properties_markdown(rows) : tmc::detail::properties_text(rows));
      return 0;
    }
    if (stages->parsed()) return run_stages(markdown);
    if (stat->parsed()) return tmc_tool::run_stat(stat_opts);
    if (modules->parsed()) return tmc_tool::run_modules(modules_opts);
    if (run->parsed()) return tmc_tool::run_program(run_opts);
  } catch (const std::exception& e) {
    std::cerr << "tmc: " << e.what() << "\n";
    return 1;
  }
  return 2;
}

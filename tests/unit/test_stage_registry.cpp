// Registry::add and Registry::resolve_params: a stage's ParamSpecs are the one place its
// ranges, words and defaults live, and the registry enforces them for every stage.
#include <doctest/doctest.h>

#include <memory>

#include "tmc/stage.hpp"

using namespace tmc;

namespace {

class Nop final : public Stage {
 public:
  bool configure(const Params&, const StageEnv&, std::vector<std::string>&) override { return true; }
};

constexpr std::string_view kColours[] = {"red", "green", "blue"};

StageInfo demo(std::vector<ParamSpec> params) {
  return StageInfo{.kind = "demo.stage",
                   .synopsis = "demo",
                   .notes = "demo",
                   .params = std::move(params),
                   .counters = {},
                   .factory = [] { return std::make_unique<Nop>(); }};
}

StageInfo ranged() {
  return demo({{.name = "window", .type = ParamType::integer, .default_value = "64", .doc = "w", .min = 1,
                .max = 65536},
               {.name = "floor", .type = ParamType::integer, .default_value = "0", .doc = "f", .min = 0},
               {.name = "p", .type = ParamType::real, .default_value = "0.5", .doc = "p", .lo = 0.0, .hi = 1.0},
               {.name = "share", .type = ParamType::real, .default_value = "1", .doc = "s", .lo = 0.0, .hi = 1.0,
                .lo_open = true},
               {.name = "colour", .type = ParamType::string, .default_value = "red", .doc = "c", .one_of = kColours},
               {.name = "palette", .type = ParamType::string_list, .default_value = "", .doc = "l",
                .one_of = kColours},
               {.name = "names", .type = ParamType::string_list, .default_value = "a,b", .doc = "n"}});
}

std::vector<std::string> resolve(const Registry& r, std::map<std::string, std::string, std::less<>> given,
                                 Params* out = nullptr) {
  Params params;
  std::vector<std::string> errors;
  const StageInfo* info = r.find("demo.stage");
  REQUIRE(info != nullptr);
  const bool ok = r.resolve_params(*info, given, params, errors);
  CHECK(ok == errors.empty());
  if (out != nullptr) *out = params;
  return errors;
}

}  // namespace

TEST_CASE("stage registry: values outside a parameter's range or words are refused, naming stage and range") {
  Registry r;
  REQUIRE(r.add(ranged()).is_ok());
  CHECK(resolve(r, {{"window", "0"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'window' must be in 1..65536, got 0"});
  CHECK(resolve(r, {{"window", "65537"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'window' must be in 1..65536, got 65537"});
  CHECK(resolve(r, {{"floor", "-1"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'floor' must be at least 0, got -1"});
  CHECK(resolve(r, {{"p", "1.5"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'p' must be in [0, 1], got 1.5"});
  CHECK(resolve(r, {{"p", "nan"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'p' must be in [0, 1], got nan"});
  CHECK(resolve(r, {{"share", "0"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'share' must be in (0, 1], got 0"});
  CHECK(resolve(r, {{"colour", "mauve"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'colour' must be one of red, green, blue, got "
                                 "\"mauve\""});
  CHECK(resolve(r, {{"palette", "red,mauve"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'palette' items must be among red, green, blue, "
                                 "got \"mauve\""});
  CHECK(resolve(r, {{"names", "a,,b"}}) ==
        std::vector<std::string>{"stage 'demo.stage': parameter 'names' expects list of strings, got 'a,,b'"});
  // Every problem is reported, not only the first.
  CHECK(resolve(r, {{"window", "0"}, {"colour", "x"}, {"p", "-1"}}).size() == 3);
  // The bounds themselves are allowed.
  CHECK(resolve(r, {{"window", "1"}, {"p", "0"}, {"share", "1"}, {"colour", "blue"}}).empty());
  CHECK(resolve(r, {{"window", "65536"}, {"p", "1"}}).empty());
}

TEST_CASE("stage registry: resolved values are typed, with every default filled in") {
  Registry r;
  REQUIRE(r.add(ranged()).is_ok());
  Params p;
  CHECK(resolve(r, {{"window", "128"}, {"palette", "green,blue"}}, &p).empty());
  CHECK(p.integer("window") == 128);
  CHECK(p.integer("floor") == 0);
  CHECK(p.real("p") == 0.5);
  CHECK(p.text("colour") == "red");
  CHECK(p.list("palette") == std::vector<std::string>{"green", "blue"});
  CHECK(p.list("names") == std::vector<std::string>{"a", "b"});
  CHECK(param_value_to_string(p.values().at("palette")) == "green,blue");
  CHECK(resolve(r, {{"names", ""}}, &p).empty());
  CHECK(p.list("names").empty());  // "" is the empty list
  Params spaced;
  CHECK(resolve(r, {{"names", " m1, m2 "}}, &spaced).empty());
  CHECK(spaced.list("names") == std::vector<std::string>{"m1", "m2"});  // blanks around items are not kept
  CHECK(!resolve(r, {{"names", "a, ,b"}}).empty());
  CHECK(p.text("undeclared").empty());
  CHECK(p.integer("undeclared") == 0);
}

TEST_CASE("stage registry: a kind whose default breaks its own declaration is refused at registration") {
  Registry r;
  Status s = r.add(demo({{.name = "window", .type = ParamType::integer, .default_value = "0", .doc = "w", .min = 1,
                          .max = 10}}));
  CHECK(s.code() == Code::INVALID_ARGUMENT);
  CHECK(s.message() == "stage 'demo.stage': the default of parameter 'window' must be in 1..10, got 0");
  s = r.add(demo({{.name = "colour", .type = ParamType::string, .default_value = "mauve", .doc = "c",
                   .one_of = kColours}}));
  CHECK(s.message() == "stage 'demo.stage': the default of parameter 'colour' must be one of red, green, blue, got "
                       "\"mauve\"");
  s = r.add(demo({{"n", ParamType::integer, "many", "n"}}));
  CHECK(s.message() == "stage 'demo.stage': the default of parameter 'n' is not of type int: 'many'");
  s = r.add(demo({{"n", ParamType::integer, "1", "n"}, {"n", ParamType::integer, "2", "n"}}));
  CHECK(s.message() == "stage 'demo.stage': parameter 'n' is declared twice");
  CHECK(r.find("demo.stage") == nullptr);
  CHECK(r.add(ranged()).is_ok());
}

TEST_CASE("stage registry: allowed values read the way the manifest schema writes them") {
  const StageInfo info = ranged();
  CHECK(param_allowed_text(info.params[0]) == "1..65536");
  CHECK(param_allowed_text(info.params[1]) == "at least 0");
  CHECK(param_allowed_text(info.params[2]) == "[0, 1]");
  CHECK(param_allowed_text(info.params[3]) == "(0, 1]");
  CHECK(param_allowed_text(info.params[4]) == "red | green | blue");
  CHECK(param_allowed_text(info.params[6]).empty());
  CHECK(param_type_name(ParamType::string_list) == "list of strings");
}

TEST_CASE("stage registry: every built-in stage registered (none refused for a bad declaration)") {
  // register_builtin_stages ignores add()'s status; a refused kind would silently vanish.
  CHECK(Registry::builtin().all().size() == 14);
}

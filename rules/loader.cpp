#include "rules/loader.hpp"

#include "bot/core/suggest.hpp"
#include "rules/engine.hpp"
#include "rules/text.hpp"

#include <nlohmann/json.hpp>
#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

namespace qunbot::rules {

std::string Diagnostic::headline() const
{
    std::string s = file;
    if (line > 0) s += ":" + std::to_string(line) + ":" + std::to_string(column);
    s += severity == Severity::error ? ": error: " : ": warning: ";
    return s + message;
}

std::string Diagnostic::format() const
{
    std::string s = headline();
    if (!source_line.empty()) {
        s += "\n  " + source_line + "\n  ";
        // The caret lines up by characters; wide CJK characters take two cells in a terminal.
        std::size_t cells = 0;
        int col = 1;
        for (std::size_t i = 0; i < source_line.size() && col < column; ++col) {
            const auto b = static_cast<unsigned char>(source_line[i]);
            const std::size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
            if (b == '\t') { s += '\t'; ++i; continue; }
            cells += len >= 3 ? 2 : 1;
            i += len;
        }
        s += std::string(cells, ' ') + "^";
    }
    return s;
}

std::size_t LoadResult::error_count() const noexcept
{
    return static_cast<std::size_t>(std::count_if(diagnostics.begin(), diagnostics.end(),
                                                  [](const Diagnostic& d) { return d.severity == Diagnostic::Severity::error; }));
}

std::size_t LoadResult::warning_count() const noexcept { return diagnostics.size() - error_count(); }

std::string LoadResult::report() const
{
    std::string s;
    for (const auto& d : diagnostics) s += d.format() + "\n";
    s += std::to_string(files.size()) + " file(s), ";
    if (rules) s += std::to_string(rules->rules.size()) + " rule(s), ";
    if (rules && !rules->draws.empty()) s += std::to_string(rules->draws.size()) + " draw(s), ";
    s += std::to_string(error_count()) + " error(s), " + std::to_string(warning_count()) + " warning(s)\n";
    return s;
}

bool parse_duration(std::string_view text, std::int64_t& ms)
{
    std::int64_t total = 0;
    std::size_t i = 0;
    if (text.empty()) return false;
    while (i < text.size()) {
        std::int64_t n = 0;
        const std::size_t start = i;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            n = n * 10 + (text[i] - '0');
            if (n > 1'000'000'000) return false;
            ++i;
        }
        if (i == start) return false;
        std::int64_t unit = 0;
        if (text.substr(i, 2) == "ms") { unit = 1; i += 2; }
        else if (i < text.size() && text[i] == 's') { unit = 1000; ++i; }
        else if (i < text.size() && text[i] == 'm') { unit = 60'000; ++i; }
        else if (i < text.size() && text[i] == 'h') { unit = 3'600'000; ++i; }
        else if (i < text.size() && text[i] == 'd') { unit = 86'400'000; ++i; }
        else return false;
        total += n * unit;
    }
    if (total <= 0) return false;
    ms = total;
    return true;
}

namespace {

namespace fs = std::filesystem;
using Sev = Diagnostic::Severity;

bool is_test_file(const fs::path& p)
{
    const auto name = p.filename().string();
    return name.ends_with(".test.yaml") || name.ends_with(".test.yml");
}

std::vector<fs::path> list_dir(const fs::path& dir, bool tests)
{
    std::vector<fs::path> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        const auto ext = it->path().extension().string();
        if (ext != ".yaml" && ext != ".yml") continue;
        if (it->path().filename().string().starts_with(".")) continue; // editor swap/backup files
        if (is_test_file(it->path()) == tests) out.push_back(it->path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

struct Source {
    std::string name;
    std::string text;
    std::vector<std::size_t> line_starts;

    void index()
    {
        line_starts = {0};
        for (std::size_t i = 0; i < text.size(); ++i) if (text[i] == '\n') line_starts.push_back(i + 1);
    }
    [[nodiscard]] std::string line(int l) const // 1-based
    {
        if (l < 1 || static_cast<std::size_t>(l) > line_starts.size()) return {};
        const auto b = line_starts[static_cast<std::size_t>(l - 1)];
        auto e = text.find('\n', b);
        if (e == std::string::npos) e = text.size();
        std::string s = text.substr(b, e - b);
        if (!s.empty() && s.back() == '\r') s.pop_back();
        return s;
    }
    // 1-based line and character column of byte `pos`.
    [[nodiscard]] std::pair<int, int> position(std::size_t pos) const
    {
        pos = std::min(pos, text.size());
        const auto it = std::upper_bound(line_starts.begin(), line_starts.end(), pos);
        const auto line = static_cast<int>(it - line_starts.begin());
        const auto start = line_starts[static_cast<std::size_t>(line - 1)];
        int col = 1;
        for (std::size_t i = start; i < pos; ++i) {
            if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++col;
        }
        return {line, col};
    }
};

struct Where {
    const Source* src = nullptr;
    std::size_t pos = 0;
};

struct ListDef {
    std::vector<std::string> items;
    Where where;
    bool used = false;
};

struct GroupDef {
    std::uint32_t index = 0;
    Where where;
    bool used = false;
};

class Loader {
public:
    LoadResult run(std::vector<Source> sources)
    {
        sources_ = std::move(sources);
        for (auto& s : sources_) s.index();
        std::vector<std::pair<const Source*, YAML::Node>> docs;
        for (const auto& s : sources_) {
            result_.files.push_back(s.name);
            try {
                YAML::Node root = YAML::Load(s.text);
                docs.emplace_back(&s, root);
            } catch (const YAML::Exception& e) {
                add(Sev::error, Where{&s, e.mark.is_null() ? 0 : static_cast<std::size_t>(e.mark.pos)},
                    "YAML syntax: " + e.msg);
            }
        }
        // Definitions first, from every file, so a rule may use a list defined in another file.
        for (auto& [src, root] : docs) define(*src, root);
        for (auto& [src, root] : docs) compile_rules(*src, root);
        for (auto& [src, root] : docs) compile_draws(*src, root);
        for (const auto& [name, l] : lists_) {
            if (!l.used) add(Sev::warning, l.where, "list \"" + name + "\" is defined but no rule uses it");
        }
        for (const auto& [name, g] : groups_) {
            if (!g.used) add(Sev::warning, g.where, "group selection \"" + name + "\" is defined but no rule uses it");
        }
        std::stable_sort(result_.diagnostics.begin(), result_.diagnostics.end(), [this](const Diagnostic& a, const Diagnostic& b) {
            if (a.file != b.file) return file_rank(a.file) < file_rank(b.file);
            return std::tie(a.line, a.column) < std::tie(b.line, b.column);
        });
        if (result_.error_count() == 0) {
            finish();
            build_regex_set(set_); // adds the regex prefilter's literals to the keyword index
            set_.keywords.build();
            set_.pattern_sets.resize(set_.keywords.pattern_count());
            result_.rules = std::make_shared<const RuleSet>(std::move(set_));
        }
        return std::move(result_);
    }

private:
    std::size_t file_rank(const std::string& name) const
    {
        for (std::size_t i = 0; i < sources_.size(); ++i) if (sources_[i].name == name) return i;
        return sources_.size();
    }

    void add(Sev sev, const Where& w, std::string message)
    {
        Diagnostic d;
        d.severity = sev;
        d.message = std::move(message);
        if (w.src) {
            d.file = w.src->name;
            const auto [line, col] = w.src->position(w.pos);
            d.line = line;
            d.column = col;
            d.source_line = w.src->line(line);
        }
        result_.diagnostics.push_back(std::move(d));
    }

    static Where at(const Source& src, const YAML::Node& n, const Where& fallback)
    {
        if (!n.IsDefined()) return fallback;
        const auto m = n.Mark();
        if (m.is_null() || m.pos < 0) return fallback;
        return Where{&src, static_cast<std::size_t>(m.pos)};
    }

    void error(const Where& w, std::string msg) { add(Sev::error, w, std::move(msg)); }

    // Checks a mapping's keys; reports unknown (with a suggestion) and duplicate keys.
    void check_keys(const Source& src, const YAML::Node& map, std::initializer_list<std::string_view> allowed,
                    std::string_view what)
    {
        std::set<std::string> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            const auto w = at(src, it->first, {});
            const auto key = it->first.IsScalar() ? it->first.Scalar() : std::string();
            if (!seen.insert(key).second) {
                error(w, "duplicate key \"" + key + "\" in " + std::string(what));
                continue;
            }
            if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
            std::string msg = "unknown key \"" + key + "\" in " + std::string(what);
            if (auto best = core::closest(key, std::vector<std::string_view>(allowed)); !best.empty()) {
                msg += "; did you mean \"" + best + "\"?";
            } else {
                msg += " (allowed: ";
                bool first = true;
                for (auto a : allowed) { msg += (first ? "" : ", ") + std::string(a); first = false; }
                msg += ")";
            }
            error(w, std::move(msg));
        }
    }

    std::optional<std::string> scalar(const Source& src, const YAML::Node& n, const Where& fallback, std::string_view what)
    {
        if (n.IsScalar()) return n.Scalar();
        error(at(src, n, fallback), std::string(what) + " must be a single value" + (n.IsNull() ? ", but it is empty" : ""));
        return std::nullopt;
    }

    // A scalar or a list of scalars; `$name` entries expand a list from `lists:`.
    std::optional<std::vector<std::string>> strings(const Source& src, const YAML::Node& n, const Where& fallback,
                                                    std::string_view what, bool allow_lists)
    {
        std::vector<std::string> out;
        bool ok = true;
        auto one = [&](const YAML::Node& item) {
            const auto w = at(src, item, fallback);
            if (!item.IsScalar()) {
                error(w, std::string(what) + ": expected text, found " + (item.IsMap() ? "a mapping" : item.IsSequence() ? "a list" : "nothing"));
                ok = false;
                return;
            }
            const auto& v = item.Scalar();
            if (allow_lists && v.starts_with("$")) {
                const auto name = v.substr(1);
                auto it = lists_.find(name);
                if (it == lists_.end()) {
                    std::vector<std::string_view> names;
                    for (const auto& [k, l] : lists_) names.push_back(k);
                    std::string msg = "undefined list \"" + v + "\"";
                    if (auto best = core::closest(name, names); !best.empty()) msg += "; did you mean \"$" + best + "\"?";
                    error(w, std::move(msg));
                    ok = false;
                    return;
                }
                it->second.used = true;
                out.insert(out.end(), it->second.items.begin(), it->second.items.end());
                return;
            }
            if (v.empty()) {
                error(w, std::string(what) + ": empty value");
                ok = false;
                return;
            }
            out.push_back(v);
        };
        if (n.IsSequence()) {
            if (n.size() == 0) {
                error(at(src, n, fallback), std::string(what) + ": empty list");
                return std::nullopt;
            }
            for (const auto& item : n) one(item);
        } else if (n.IsScalar()) {
            one(n);
        } else {
            error(at(src, n, fallback), std::string(what) + ": expected a value or a list of values");
            return std::nullopt;
        }
        if (!ok) return std::nullopt;
        return out;
    }

    void define(const Source& src, const YAML::Node& root)
    {
        const Where top{&src, 0};
        if (root.IsNull()) {
            add(Sev::warning, top, "file is empty");
            return;
        }
        if (!root.IsMap()) {
            error(at(src, root, top), "a rule file is a mapping with `version`, `groups`, `lists`, `rules` and `draws`");
            return;
        }
        check_keys(src, root, {"version", "groups", "lists", "rules", "draws"}, "the file");
        if (auto v = root["version"]; !v.IsDefined()) {
            error(top, "missing `version: 1` at the top of the file");
        } else if (!v.IsScalar() || v.Scalar() != "1") {
            error(at(src, v, top), "unsupported version \"" + (v.IsScalar() ? v.Scalar() : std::string()) + "\"; this qunbot reads version 1");
        }
        if (auto lists = root["lists"]; lists.IsDefined() && !lists.IsNull()) {
            if (!lists.IsMap()) {
                error(at(src, lists, top), "`lists` must map names to lists of words");
            } else {
                for (auto it = lists.begin(); it != lists.end(); ++it) define_list(src, it->first, it->second);
            }
        }
        if (auto groups = root["groups"]; groups.IsDefined() && !groups.IsNull()) {
            if (!groups.IsMap()) {
                error(at(src, groups, top), "`groups` must map names to group selections");
            } else {
                for (auto it = groups.begin(); it != groups.end(); ++it) define_group(src, it->first, it->second);
            }
        }
    }

    bool valid_name(const Source& src, const YAML::Node& key, std::string_view what)
    {
        const auto w = at(src, key, {});
        const auto name = key.IsScalar() ? key.Scalar() : std::string();
        if (name.empty() || name.find_first_of(" \t/$\x1f") != std::string::npos) {
            error(w, std::string(what) + " name \"" + name + "\" must be non-empty without spaces, '/' or '$'");
            return false;
        }
        return true;
    }

    std::string location(const Where& w) const
    {
        if (!w.src) return "?";
        const auto [l, c] = w.src->position(w.pos);
        return w.src->name + ":" + std::to_string(l) + ":" + std::to_string(c);
    }

    void define_list(const Source& src, const YAML::Node& key, const YAML::Node& value)
    {
        if (!valid_name(src, key, "list")) return;
        const auto w = at(src, key, {});
        const auto name = key.Scalar();
        if (auto it = lists_.find(name); it != lists_.end()) {
            error(w, "list \"" + name + "\" is already defined at " + location(it->second.where));
            return;
        }
        if (!value.IsSequence()) {
            error(at(src, value, w), "list \"" + name + "\" must be a list, e.g. [加微信, 加V]");
            return;
        }
        ListDef def;
        def.where = w;
        std::set<std::string> seen;
        for (const auto& item : value) {
            const auto iw = at(src, item, w);
            if (!item.IsScalar() || item.Scalar().empty()) {
                error(iw, "list \"" + name + "\": every entry must be non-empty text");
                continue;
            }
            if (item.Scalar().starts_with("$")) {
                error(iw, "list \"" + name + "\": lists cannot include other lists");
                continue;
            }
            if (!seen.insert(normalize(item.Scalar(), Fold::keyword)).second) {
                add(Sev::warning, iw, "list \"" + name + "\": \"" + item.Scalar() + "\" repeats an earlier entry (after normalisation)");
                continue;
            }
            def.items.push_back(item.Scalar());
        }
        lists_.emplace(name, std::move(def));
    }

    void define_group(const Source& src, const YAML::Node& key, const YAML::Node& value)
    {
        if (!valid_name(src, key, "group selection")) return;
        const auto w = at(src, key, {});
        const auto name = key.Scalar();
        if (name == "all") {
            error(w, "\"all\" is reserved: `in: all` already means every group");
            return;
        }
        if (auto it = groups_.find(name); it != groups_.end()) {
            error(w, "group selection \"" + name + "\" is already defined at " + location(it->second.where));
            return;
        }
        if (!value.IsMap()) {
            error(at(src, value, w), "group selection \"" + name + "\" must be a mapping, e.g. { name_glob: \"*门店*\" }");
            return;
        }
        check_keys(src, value, {"ids", "name_glob", "tags", "owner"}, "a group selection");
        GroupSelection sel;
        sel.name = name;
        auto take = [&](const char* k, std::vector<std::string>& out) {
            if (auto n = value[k]; n.IsDefined()) {
                if (auto v = strings(src, n, w, k, false)) out = std::move(*v);
            }
        };
        take("ids", sel.ids);
        take("name_glob", sel.name_globs);
        take("tags", sel.tags);
        take("owner", sel.owners);
        if (sel.ids.empty() && sel.name_globs.empty() && sel.tags.empty() && sel.owners.empty()) {
            error(at(src, value, w), "group selection \"" + name + "\" selects nothing: give ids, name_glob, tags or owner");
            return;
        }
        GroupDef def;
        def.index = static_cast<std::uint32_t>(set_.selections.size());
        def.where = w;
        set_.selections.push_back(std::move(sel));
        groups_.emplace(name, def);
    }

    void compile_rules(const Source& src, const YAML::Node& root)
    {
        if (!root.IsMap()) return;
        const Where top{&src, 0};
        auto rules = root["rules"];
        if (!rules.IsDefined() || rules.IsNull()) return;
        if (!rules.IsSequence()) {
            error(at(src, rules, top), "`rules` must be a list of rules, each starting with \"- id: ...\"");
            return;
        }
        for (const auto& r : rules) compile_rule(src, r);
    }

    void compile_rule(const Source& src, const YAML::Node& node)
    {
        const auto w = at(src, node, {});
        if (!node.IsMap()) {
            error(w, "a rule must be a mapping with id, on, do, ...");
            return;
        }
        const std::size_t errors_before = result_.error_count();
        check_keys(src, node, {"id", "description", "on", "in", "when", "unless", "do", "stop", "batch", "cooldown", "enabled", "wecom_template",
                           "schedule", "moderate"},
                   "a rule");
        Rule rule;
        rule.file = src.name;
        rule.line = src.position(w.pos).first;
        bool enabled = true;

        if (auto id = node["id"]; !id.IsDefined()) {
            error(w, "rule without `id`: give every rule a stable id (it keys counters and idempotency)");
        } else if (auto v = scalar(src, id, w, "`id`")) {
            rule.id = *v;
            if (rule.id.empty() || rule.id.find_first_of(" \t/\x1f") != std::string::npos) {
                error(at(src, id, w), "rule id \"" + rule.id + "\" must be non-empty without spaces or '/'");
            } else if (auto it = rule_where_.find(rule.id); it != rule_where_.end()) {
                error(at(src, id, w), "duplicate rule id \"" + rule.id + "\", first used at " + location(it->second));
            } else {
                rule_where_.emplace(rule.id, at(src, id, w));
            }
        }
        bool have_trigger = false;
        if (auto on = node["on"]; !on.IsDefined()) {
            error(w, "rule without `on`: say what it reacts to (member_joined, member_left, message, contact_added, schedule)");
        } else if (auto v = scalar(src, on, w, "`on`")) {
            static const std::vector<std::pair<std::string_view, Trigger>> triggers{
                {"member_joined", Trigger::member_joined},
                {"member_left", Trigger::member_left},
                {"message", Trigger::message},
                {"contact_added", Trigger::contact_added},
                {"schedule", Trigger::schedule},
            };
            for (const auto& [n, t] : triggers) if (*v == n) { rule.trigger = t; have_trigger = true; }
            if (!have_trigger) {
                std::string msg = "unknown trigger \"" + *v + "\"";
                if (auto best = core::closest(*v, {"member_joined", "member_left", "message", "contact_added", "schedule"}); !best.empty()) {
                    msg += "; did you mean \"" + best + "\"?";
                } else {
                    msg += " (triggers: member_joined, member_left, message, contact_added, schedule)";
                }
                error(at(src, on, w), std::move(msg));
            }
        }
        if (auto e = node["enabled"]; e.IsDefined()) {
            if (auto b = boolean(src, e, w, "`enabled`")) enabled = *b;
        }
        if (auto s = node["stop"]; s.IsDefined()) {
            if (auto b = boolean(src, s, w, "`stop`")) rule.stop = *b;
        }
        if (auto in = node["in"]; in.IsDefined()) {
            if (compile_in(src, in, w, rule.all_groups, rule.selections) && have_trigger && rule.trigger == Trigger::contact_added) {
                error(at(src, in, w), "`in` selects groups, but contact_added events are 1:1 and have no group");
            }
        }
        if (auto b = node["batch"]; b.IsDefined()) {
            if (auto v = scalar(src, b, w, "`batch`")) {
                if (!parse_duration(*v, rule.batch_ms)) {
                    error(at(src, b, w), "`batch`: \"" + *v + "\" is not a duration like 30s, 2m");
                } else if (rule.batch_ms < 1000 || rule.batch_ms > 3'600'000) {
                    error(at(src, b, w), "`batch` must be between 1s and 1h");
                }
                if (have_trigger && rule.trigger != Trigger::member_joined) {
                    error(at(src, b, w), "`batch` merges joins; it applies to `on: member_joined` rules only");
                }
            }
        }
        if (auto c = node["cooldown"]; c.IsDefined()) compile_cooldown(src, c, w, rule);
        if (auto sc = node["schedule"]; sc.IsDefined()) {
            if (have_trigger && rule.trigger != Trigger::schedule) {
                error(at(src, sc, w), "`schedule` says when an `on: schedule` rule fires; this rule is `on: " +
                                          std::string(to_string(rule.trigger)) + "`");
            } else {
                compile_schedule(src, sc, w, rule.schedule);
            }
        } else if (have_trigger && rule.trigger == Trigger::schedule) {
            error(w, "`on: schedule` needs `schedule:`, e.g. schedule: \"daily 09:00\" or a cron expression \"0 9 * * 1-5\"");
        }
        if (have_trigger && rule.trigger == Trigger::schedule) {
            for (const char* key : {"when", "unless", "batch", "cooldown"}) {
                if (auto n = node[key]; n.IsDefined()) {
                    error(at(src, n, w), std::string("a scheduled rule has no event to test or merge: `") + key +
                                             "` does not apply (choose its groups with `in`)");
                }
            }
        }

        if (have_trigger) {
            if (auto when = node["when"]; when.IsDefined() && rule.trigger != Trigger::schedule) {
                rule.has_when = compile_condition(src, when, w, rule, rule.when);
            }
            if (auto unless = node["unless"]; unless.IsDefined() && rule.trigger != Trigger::schedule) {
                rule.has_unless = compile_condition(src, unless, w, rule, rule.unless);
            }
            if (auto m = node["moderate"]; m.IsDefined()) compile_moderation(src, m, w, rule);
            if (auto d = node["do"]; !d.IsDefined()) {
                if (!rule.moderated) error(w, "rule without `do`: list what it does, e.g. do: [ {post: \"...\"} ]");
            } else {
                compile_actions(src, d, w, rule);
            }
            if (auto t = node["wecom_template"]; t.IsDefined()) compile_wecom_template(src, t, w, node, rule);
            if (rule.trigger == Trigger::message && !rule.has_when && !rule.has_unless && enabled &&
                result_.error_count() == errors_before) {
                add(Sev::warning, w, "rule \"" + rule.id + "\" has no `when`: it answers every message in its groups");
            }
        }
        if (result_.error_count() != errors_before || !enabled) return;
        set_.rule_by_id.emplace(rule.id, static_cast<std::uint32_t>(set_.rules.size()));
        set_.any_activity = set_.any_activity || rule.uses_activity;
        set_.rules.push_back(std::move(rule));
    }

    // `moderate: { ladder: [warn, [recall, warn], remove, blacklist], decay: 7d, dry_run: false,
    // warn: "..." }`: a strike ladder for message (and join) rules.
    void compile_moderation(const Source& src, const YAML::Node& m, const Where& w, Rule& rule)
    {
        const auto mw = at(src, m, w);
        rule.moderated = true; // even when rejected below: no second error about a missing `do`
        if (rule.trigger != Trigger::message && rule.trigger != Trigger::member_joined) {
            error(mw, "`moderate` applies to `on: message` and `on: member_joined` rules");
            return;
        }
        if (!m.IsMap()) {
            error(mw, "`moderate` is { ladder: [warn, [recall, warn], remove, blacklist], decay: 7d, dry_run: false, warn: \"...\" }");
            return;
        }
        check_keys(src, m, {"ladder", "decay", "dry_run", "warn"}, "`moderate`");
        auto& mod = rule.moderation;
        auto step = [&](const YAML::Node& n, std::vector<Moderation::Step>& rung) {
            const auto sw = at(src, n, mw);
            if (!n.IsScalar()) {
                error(sw, "a ladder step is warn, recall, remove or blacklist");
                return;
            }
            const auto& v = n.Scalar();
            if (v == "warn") rung.push_back(Moderation::Step::warn);
            else if (v == "recall") {
                if (rule.trigger != Trigger::message) error(sw, "`recall` needs a message: it does not apply to `on: member_joined`");
                rung.push_back(Moderation::Step::recall);
            } else if (v == "remove") rung.push_back(Moderation::Step::remove);
            else if (v == "blacklist") rung.push_back(Moderation::Step::blacklist);
            else {
                std::string msg = "unknown ladder step \"" + v + "\"";
                if (auto best = core::closest(v, {"warn", "recall", "remove", "blacklist"}); !best.empty()) msg += "; did you mean \"" + best + "\"?";
                error(sw, std::move(msg));
            }
        };
        if (auto l = m["ladder"]; !l.IsDefined() || !l.IsSequence() || l.size() == 0) {
            error(at(src, l, mw), "`moderate` needs a `ladder`: one rung per offence, e.g. [warn, [recall, warn], remove, blacklist]");
        } else {
            for (const auto& rungs : l) {
                std::vector<Moderation::Step> rung;
                if (rungs.IsSequence()) {
                    for (const auto& s : rungs) step(s, rung);
                } else {
                    step(rungs, rung);
                }
                mod.ladder.push_back(std::move(rung));
            }
        }
        if (auto dc = m["decay"]; dc.IsDefined()) {
            if (auto v = scalar(src, dc, mw, "`decay`")) {
                if (!parse_duration(*v, mod.decay_ms) || mod.decay_ms < 60'000 || mod.decay_ms > 366 * 86'400'000LL) {
                    error(at(src, dc, mw), "`decay`: \"" + *v + "\" is not a duration from 1m to 366d, e.g. 7d");
                }
            }
        }
        if (auto dr = m["dry_run"]; dr.IsDefined()) {
            if (auto b = boolean(src, dr, mw, "`dry_run`")) mod.dry_run = *b;
        }
        if (auto wn = m["warn"]; wn.IsDefined()) {
            if (!wn.IsScalar()) error(at(src, wn, mw), "`warn` must be a string");
            else mod.warn = compile_template(src, wn, mw, rule.trigger);
        }
        rule.moderated = true;
    }

    // `in: all`, `in: name` or `in: [a, b]` against the `groups:` selections.
    bool compile_in(const Source& src, const YAML::Node& in, const Where& w, bool& all_groups, std::vector<std::uint32_t>& selections)
    {
        auto names = strings(src, in, w, "`in`", false);
        if (!names) return false;
        all_groups = false;
        for (const auto& n : *names) {
            if (n == "all") { all_groups = true; continue; }
            auto it = groups_.find(n);
            if (it == groups_.end()) {
                std::vector<std::string_view> names_known{"all"};
                for (const auto& [k, g] : groups_) names_known.push_back(k);
                std::string msg = "undefined group selection \"" + n + "\"";
                if (auto best = core::closest(n, names_known); !best.empty()) msg += "; did you mean \"" + best + "\"?";
                else msg += " (define it under `groups:`)";
                error(at(src, in, w), std::move(msg));
                continue;
            }
            it->second.used = true;
            selections.push_back(it->second.index);
        }
        return true;
    }

    // A WeCom group welcome template is one text for the whole corp, sent by WeCom on every join
    // in the groups whose owners applied it: no conditions, no per-group variables.
    void compile_wecom_template(const Source& src, const YAML::Node& t, const Where& w, const YAML::Node& node, Rule& rule)
    {
        auto b = boolean(src, t, w, "`wecom_template`");
        if (!b || !*b) return;
        const auto where = at(src, t, w);
        if (rule.trigger != Trigger::member_joined) {
            error(where, "`wecom_template` makes a group welcome template: it applies to `on: member_joined` rules only");
            return;
        }
        for (const char* key : {"when", "unless", "batch", "cooldown", "in"}) {
            if (node[key].IsDefined()) {
                error(where, std::string("WeCom sends the template itself on every join in the groups that use it, so `") + key +
                                 "` cannot apply to a `wecom_template` rule");
            }
        }
        if (rule.actions.size() != 1 || rule.actions.front().kind != ActionSpec::Kind::post) {
            error(where, "a `wecom_template` rule has exactly one action, a `post` (the template text)");
            return;
        }
        std::string text;
        for (const auto& part : rule.actions.front().body.parts()) {
            if (!part.is_var) {
                text += part.literal;
            } else if (part.var == Var::member_name || part.var == Var::member_mention) {
                text += "%NICKNAME%";
            } else {
                error(where, "a WeCom welcome template is one text for every group: only {{ member.name }} (sent as %NICKNAME%) can be "
                             "used, not {{ " + std::string(to_string(part.var)) + " }}");
                return;
            }
        }
        if (text.size() > 3000) {
            error(where, "a WeCom welcome template holds at most 3000 bytes; this one has " + std::to_string(text.size()));
            return;
        }
        rule.wecom_template = true;
        rule.template_text = std::move(text);
    }

    // `schedule: "daily 09:00"` or {at, tz, missed, grace, jitter}.
    void compile_schedule(const Source& src, const YAML::Node& sc, const Where& w, ScheduleSpec& spec)
    {
        // Constructed, never assigned: assigning a YAML::Node writes through to the node it refers to.
        const YAML::Node at_node = sc.IsMap() ? sc["at"] : sc;
        if (sc.IsMap()) {
            check_keys(src, sc, {"at", "tz", "missed", "grace", "jitter"}, "a schedule");
            if (!at_node.IsDefined()) {
                error(at(src, sc, w), "a schedule needs `at`: \"daily 09:00\", \"mon,wed,fri 10:00\", \"at 2026-12-12 20:00\" or cron");
                return;
            }
            if (auto tz = sc["tz"]; tz.IsDefined()) {
                if (auto v = scalar(src, tz, w, "`tz`")) {
                    if (!known_time_zone(*v)) error(at(src, tz, w), "unknown time zone \"" + *v + "\" (IANA names like Asia/Shanghai)");
                    else spec.tz = *v;
                }
            }
            if (auto m = sc["missed"]; m.IsDefined()) {
                if (auto v = scalar(src, m, w, "`missed`")) {
                    if (*v == "skip") spec.missed = ScheduleSpec::Missed::skip;
                    else if (*v == "catch_up") spec.missed = ScheduleSpec::Missed::catch_up;
                    else error(at(src, m, w), "`missed` is skip or catch_up, not \"" + *v + "\"");
                }
            }
            auto duration = [&](const char* key, std::int64_t& out, std::int64_t max_ms) {
                if (auto n = sc[key]; n.IsDefined()) {
                    if (auto v = scalar(src, n, w, key)) {
                        if (!parse_duration(*v, out) || out < 0 || out > max_ms) {
                            error(at(src, n, w), std::string("`") + key + "`: \"" + *v + "\" is not a duration like 15m (at most " +
                                                     std::to_string(max_ms / 3'600'000) + "h)");
                        }
                    }
                }
            };
            duration("grace", spec.grace_ms, 24 * 3'600'000LL);
            duration("jitter", spec.jitter_ms, 6 * 3'600'000LL);
        }
        if (auto v = scalar(src, at_node, w, "`schedule`")) {
            if (auto problem = parse_schedule(*v, spec)) error(at(src, at_node, w), "schedule: " + *problem);
        }
    }

    std::optional<bool> boolean(const Source& src, const YAML::Node& n, const Where& w, std::string_view what)
    {
        if (n.IsScalar()) {
            const auto& v = n.Scalar();
            if (v == "true" || v == "yes") return true;
            if (v == "false" || v == "no") return false;
        }
        error(at(src, n, w), std::string(what) + " must be true or false");
        return std::nullopt;
    }

    void compile_cooldown(const Source& src, const YAML::Node& c, const Where& w, Rule& rule)
    {
        auto duration = [&](const YAML::Node& n, std::int64_t& out) {
            if (auto v = scalar(src, n, w, "`cooldown`")) {
                if (!parse_duration(*v, out)) error(at(src, n, w), "`cooldown`: \"" + *v + "\" is not a duration like 30s, 10m, 1h");
            }
        };
        if (c.IsScalar()) {
            duration(c, rule.group_cooldown_ms);
            return;
        }
        if (!c.IsMap()) {
            error(at(src, c, w), "`cooldown` is a duration (per group) or { group: 5m, member: 1h }");
            return;
        }
        check_keys(src, c, {"group", "member"}, "`cooldown`");
        if (auto g = c["group"]; g.IsDefined()) duration(g, rule.group_cooldown_ms);
        if (auto m = c["member"]; m.IsDefined()) duration(m, rule.member_cooldown_ms);
    }

    static std::string describe_node(const YAML::Node& n)
    {
        YAML::Emitter e;
        e.SetMapFormat(YAML::Flow);
        e.SetSeqFormat(YAML::Flow);
        e << n;
        std::string s = e.c_str();
        if (s.size() > 120) s = s.substr(0, 117) + "...";
        return s;
    }

    bool needs(const Source& src, const YAML::Node& key, const Where& w, const Rule& rule, std::string_view cond,
               std::initializer_list<Trigger> ok)
    {
        if (std::find(ok.begin(), ok.end(), rule.trigger) != ok.end()) return true;
        std::string which;
        for (auto t : ok) which += (which.empty() ? "" : ", ") + std::string(to_string(t));
        error(at(src, key, w), "condition `" + std::string(cond) + "` does not apply to `on: " + std::string(to_string(rule.trigger)) +
                                   "` rules (it needs " + which + ")");
        return false;
    }

    // Compiles one condition node. A mapping with several keys means all of them.
    bool compile_condition(const Source& src, const YAML::Node& n, const Where& w, Rule& rule, Condition& out)
    {
        out.text = describe_node(n);
        if (n.IsSequence()) {
            out.op = Condition::Op::all;
            bool ok = true;
            for (const auto& item : n) {
                Condition c;
                ok = compile_condition(src, item, w, rule, c) && ok;
                out.children.push_back(std::move(c));
            }
            return ok;
        }
        if (!n.IsMap() || n.size() == 0) {
            error(at(src, n, w), "a condition is a mapping such as {contains: $words} or {any: [...]}");
            return false;
        }
        check_keys(src, n, {"all", "any", "not", "contains", "exact", "regex", "sender", "has_tag", "scene", "state",
                            "message_type", "active_days", "links", "contact_bait", "blacklisted", "nickname", "newcomer", "flood",
                            "repeat", "qr_code"},
                   "a condition");
        if (n.size() > 1) {
            out.op = Condition::Op::all;
            bool ok = true;
            for (auto it = n.begin(); it != n.end(); ++it) {
                Condition c;
                const YAML::Node key = it->first;
                const YAML::Node value = it->second;
                ok = compile_leaf(src, key, value, w, rule, c) && ok;
                out.children.push_back(std::move(c));
            }
            return ok;
        }
        const auto it = n.begin();
        const YAML::Node key = it->first;
        const YAML::Node value = it->second;
        const auto text = out.text;
        const bool ok = compile_leaf(src, key, value, w, rule, out);
        out.text = text;
        return ok;
    }

    bool compile_leaf(const Source& src, const YAML::Node& key, const YAML::Node& value, const Where& w, Rule& rule, Condition& out)
    {
        const auto k = key.IsScalar() ? key.Scalar() : std::string();
        const auto kw = at(src, key, w);
        const auto vw = at(src, value, kw);
        if (out.text.empty()) out.text = "{" + k + ": " + describe_node(value) + "}";
        if (k == "all" || k == "any") {
            out.op = k == "all" ? Condition::Op::all : Condition::Op::any;
            if (!value.IsSequence() || value.size() == 0) {
                error(vw, "`" + k + "` takes a non-empty list of conditions");
                return false;
            }
            bool ok = true;
            for (const auto& item : value) {
                Condition c;
                ok = compile_condition(src, item, w, rule, c) && ok;
                out.children.push_back(std::move(c));
            }
            return ok;
        }
        if (k == "not") {
            out.op = Condition::Op::not_;
            Condition c;
            const bool ok = compile_condition(src, value, w, rule, c);
            out.children.push_back(std::move(c));
            return ok;
        }
        if (k == "contains" || k == "exact") {
            if (!needs(src, key, w, rule, k, {Trigger::message})) return false;
            auto words = strings(src, value, kw, "`" + k + "`", true);
            if (!words) return false;
            out.op = k == "contains" ? Condition::Op::contains : Condition::Op::exact;
            out.keyword_set = set_.keyword_set_count++;
            set_.set_rules.emplace_back();
            for (const auto& word : *words) {
                const auto norm = normalize(word, Fold::keyword);
                if (norm.empty()) {
                    error(vw, "keyword \"" + word + "\" is empty after normalisation (only spaces or invisible characters)");
                    return false;
                }
                ++set_.keyword_count;
                if (out.op == Condition::Op::contains) {
                    const auto p = set_.keywords.add(norm);
                    if (set_.pattern_sets.size() <= p) set_.pattern_sets.resize(p + 1);
                    auto& sets = set_.pattern_sets[p];
                    if (sets.empty() || sets.back() != out.keyword_set) sets.push_back(out.keyword_set);
                } else {
                    auto& sets = set_.exact_sets[norm];
                    if (sets.empty() || sets.back() != out.keyword_set) sets.push_back(out.keyword_set);
                }
            }
            return true;
        }
        if (k == "regex") {
            if (!needs(src, key, w, rule, k, {Trigger::message})) return false;
            auto patterns = strings(src, value, kw, "`regex`", false);
            if (!patterns) return false;
            // Several patterns mean any of them: one RE2 alternation, one pass.
            std::string combined;
            bool ok = true;
            for (const auto& p : *patterns) {
                RE2::Options opts;
                opts.set_log_errors(false);
                opts.set_case_sensitive(false);
                RE2 re(p, opts);
                if (!re.ok()) {
                    error(vw, "regex \"" + p + "\" does not compile: " + re.error() + " (RE2 syntax: no backreferences or lookaround)");
                    ok = false;
                }
                combined += (combined.empty() ? "" : "|") + ("(?:" + p + ")");
            }
            if (!ok) return false;
            RE2::Options opts;
            opts.set_log_errors(false);
            opts.set_case_sensitive(false);
            opts.set_never_capture(true);
            out.op = Condition::Op::regex;
            out.regex = std::make_shared<const RE2>(combined, opts);
            return true;
        }
        if (k == "sender") {
            auto values = strings(src, value, kw, "`sender`", true);
            if (!values) return false;
            // `sender: [staff, "tag:团长"]`: the role, or a member tag; any of them.
            Condition roles{Condition::Op::role};
            Condition tags{Condition::Op::has_tag};
            for (const auto& v : *values) {
                if (v == "staff" || v == "customer") roles.values.push_back(v);
                else if (v.starts_with("tag:") && v.size() > 4) tags.values.push_back(v.substr(4));
                else {
                    error(vw, "`sender`: \"" + v + "\" is neither staff, customer nor \"tag:<name>\"");
                    return false;
                }
            }
            roles.text = "sender in " + describe_node(value);
            tags.text = roles.text;
            if (tags.values.empty()) { out.op = Condition::Op::role; out.values = std::move(roles.values); return true; }
            if (roles.values.empty()) { out.op = Condition::Op::has_tag; out.values = std::move(tags.values); return true; }
            out.op = Condition::Op::any;
            out.children = {std::move(roles), std::move(tags)};
            return true;
        }
        if (k == "has_tag") {
            auto values = strings(src, value, kw, "`has_tag`", true);
            if (!values) return false;
            out.op = Condition::Op::has_tag;
            out.values = std::move(*values);
            return true;
        }
        if (k == "scene") {
            if (!needs(src, key, w, rule, k, {Trigger::member_joined, Trigger::member_left})) return false;
            auto values = strings(src, value, kw, "`scene`", false);
            if (!values) return false;
            out.op = Condition::Op::scene;
            const bool join = rule.trigger == Trigger::member_joined;
            for (const auto& v : *values) {
                if (join && v == "invitation") out.ints.push_back(0);
                else if (join && v == "qr_code") out.ints.push_back(3);
                else if (!join && v == "left") out.ints.push_back(0);
                else if (!join && v == "removed") out.ints.push_back(1);
                else {
                    error(vw, "`scene`: \"" + v + "\" is not a " + (join ? "join scene (invitation, qr_code)" : "quit scene (left, removed)"));
                    return false;
                }
            }
            return true;
        }
        if (k == "state") {
            if (!needs(src, key, w, rule, k, {Trigger::contact_added})) return false;
            auto values = strings(src, value, kw, "`state`", true);
            if (!values) return false;
            out.op = Condition::Op::state;
            out.values = std::move(*values);
            return true;
        }
        if (k == "message_type") {
            if (!needs(src, key, w, rule, k, {Trigger::message})) return false;
            auto values = strings(src, value, kw, "`message_type`", false);
            if (!values) return false;
            static const std::vector<std::string_view> types{"text", "image", "voice", "video", "file", "link", "location",
                                                             "emotion", "weapp", "card", "mixed", "event"};
            for (const auto& v : *values) {
                if (std::find(types.begin(), types.end(), v) == types.end()) {
                    std::string msg = "`message_type`: unknown type \"" + v + "\"";
                    if (auto best = core::closest(v, types); !best.empty()) msg += "; did you mean \"" + best + "\"?";
                    error(vw, std::move(msg));
                    return false;
                }
            }
            out.op = Condition::Op::message_type;
            out.values = std::move(*values);
            return true;
        }
        if (k == "links" || k == "qr_code") {
            // `links: any` or `links: { allow: [taobao.com, $our_domains] }`; `qr_code` likewise
            // for the contents of QR codes in the message's image.
            if (!needs(src, key, w, rule, k, {Trigger::message})) return false;
            out.op = k == "links" ? Condition::Op::links : Condition::Op::qr_code;
            if (value.IsScalar() && value.Scalar() == "any") return true;
            if (!value.IsMap()) {
                error(vw, "`" + k + "` is `any` or { allow: [domain, ...] }");
                return false;
            }
            check_keys(src, value, {"allow"}, "`" + k + "`");
            if (auto a = value["allow"]; a.IsDefined()) {
                auto domains = strings(src, a, vw, "`allow`", true);
                if (!domains) return false;
                for (auto d : *domains) {
                    std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
                    if (d.starts_with("www.")) d.erase(0, 4);
                    if (d.find('.') == std::string::npos || d.find_first_of(" /:") != std::string::npos) {
                        error(at(src, a, vw), "`allow`: \"" + d + "\" is not a domain like taobao.com");
                        return false;
                    }
                    out.values.push_back(std::move(d));
                }
            }
            return true;
        }
        if (k == "nickname") {
            if (!needs(src, key, w, rule, k, {Trigger::message, Trigger::member_joined})) return false;
            auto words = strings(src, value, kw, "`nickname`", true);
            if (!words) return false;
            out.op = Condition::Op::nickname;
            for (const auto& word : *words) out.values.push_back(normalize(word, Fold::keyword));
            return true;
        }
        if (k == "newcomer" || k == "flood") {
            if (!needs(src, key, w, rule, k, k == "flood" ? std::initializer_list<Trigger>{Trigger::message}
                                                          : std::initializer_list<Trigger>{Trigger::message, Trigger::member_joined})) {
                return false;
            }
            const bool flood = k == "flood";
            if (!value.IsMap()) {
                error(vw, flood ? "`flood` is { messages: 5, within: 1m }" : "`newcomer` is { hours: 24 } and/or { messages: 3 }");
                return false;
            }
            check_keys(src, value, flood ? std::initializer_list<std::string_view>{"messages", "within"}
                                         : std::initializer_list<std::string_view>{"hours", "messages"},
                       "`" + k + "`");
            out.op = flood ? Condition::Op::flood : Condition::Op::newcomer;
            bool ok = true;
            if (auto n = value["messages"]; n.IsDefined()) {
                if (auto v = count(src, n, vw, "`messages`", 1, 100)) out.at_least = *v;
                else ok = false;
            }
            if (flood) {
                std::int64_t ms = 0;
                if (auto t = value["within"]; !t.IsDefined() || !t.IsScalar() || !parse_duration(t.Scalar(), ms) || ms < 1000 || ms > 3'600'000) {
                    error(at(src, t, vw), "`flood.within` must be a duration from 1s to 1h, e.g. 1m");
                    ok = false;
                }
                out.days = static_cast<int>(ms / 1000); // seconds
                if (out.at_least == 0) {
                    error(vw, "`flood` needs `messages`");
                    ok = false;
                }
                set_.flood_window_ms = std::max(set_.flood_window_ms, ms);
            } else {
                if (auto h = value["hours"]; h.IsDefined()) {
                    if (auto v = count(src, h, vw, "`hours`", 1, 24 * 90)) out.days = *v; // hours
                    else ok = false;
                }
                if (out.days == 0 && out.at_least == 0 && ok) {
                    error(vw, "`newcomer` needs `hours` and/or `messages`");
                    ok = false;
                }
                set_.any_newcomer = true;
            }
            return ok;
        }
        if (k == "repeat") {
            // `repeat: { groups: 3, within: 10m }`: one member, one text, several groups.
            if (!needs(src, key, w, rule, k, {Trigger::message})) return false;
            if (!value.IsMap()) {
                error(vw, "`repeat` is { groups: 3, within: 10m }");
                return false;
            }
            check_keys(src, value, {"groups", "within"}, "`repeat`");
            out.op = Condition::Op::repeat;
            bool ok = true;
            if (auto n = value["groups"]; !n.IsDefined()) {
                error(vw, "`repeat` needs `groups`");
                ok = false;
            } else if (auto v = count(src, n, vw, "`groups`", 2, 100)) {
                out.at_least = *v;
            } else {
                ok = false;
            }
            std::int64_t ms = 0;
            if (auto t = value["within"]; !t.IsDefined() || !t.IsScalar() || !parse_duration(t.Scalar(), ms) || ms < 1000 || ms > 86'400'000) {
                error(at(src, t, vw), "`repeat.within` must be a duration from 1s to 24h, e.g. 10m");
                ok = false;
            }
            out.days = static_cast<int>(ms / 1000); // seconds
            set_.repeat_window_ms = std::max(set_.repeat_window_ms, ms);
            return ok;
        }
        if (k == "blacklisted") {
            // The shared blacklist (`qunbot blacklist add`): one list for every group.
            if (!needs(src, key, w, rule, k, {Trigger::message, Trigger::member_joined, Trigger::member_left})) return false;
            auto b = boolean(src, value, vw, "`blacklisted`");
            if (!b) return false;
            out.op = Condition::Op::blacklisted;
            out.at_least = *b ? 1 : 0;
            return true;
        }
        if (k == "contact_bait") {
            if (!needs(src, key, w, rule, k, {Trigger::message})) return false;
            auto kinds = strings(src, value, kw, "`contact_bait`", false);
            if (!kinds) return false;
            for (const auto& v : *kinds) {
                if (v != "wechat" && v != "phone" && v != "qq") {
                    std::string msg = "`contact_bait`: \"" + v + "\" is not one of wechat, phone, qq";
                    if (auto best = core::closest(v, {"wechat", "phone", "qq"}); !best.empty()) msg += "; did you mean \"" + best + "\"?";
                    error(vw, std::move(msg));
                    return false;
                }
            }
            out.op = Condition::Op::contact_bait;
            out.values = std::move(*kinds);
            return true;
        }
        if (k == "active_days") {
            if (!needs(src, key, w, rule, k, {Trigger::message, Trigger::member_joined, Trigger::member_left})) return false;
            if (!value.IsMap()) {
                error(vw, "`active_days` is { at_least: 5, last: 7d }");
                return false;
            }
            check_keys(src, value, {"at_least", "last"}, "`active_days`");
            out.op = Condition::Op::active_days;
            std::int64_t last_ms = 0;
            bool ok = true;
            if (auto l = value["last"]; !l.IsDefined() || !l.IsScalar() || !parse_duration(l.Scalar(), last_ms) ||
                                        last_ms % 86'400'000 != 0 || last_ms / 86'400'000 > 60) {
                error(at(src, l, vw), "`active_days.last` must be whole days between 1d and 60d, e.g. 7d");
                ok = false;
            }
            out.days = static_cast<int>(last_ms / 86'400'000);
            if (auto a = value["at_least"]; !a.IsDefined() || !a.IsScalar()) {
                error(at(src, a, vw), "`active_days.at_least` must be a number of days");
                ok = false;
            } else {
                try {
                    std::size_t used = 0;
                    out.at_least = std::stoi(a.Scalar(), &used);
                    if (used != a.Scalar().size() || out.at_least < 1) throw std::invalid_argument("range");
                } catch (const std::exception&) {
                    error(at(src, a, vw), "`active_days.at_least` must be a whole number of days, at least 1");
                    ok = false;
                }
                if (ok && out.at_least > out.days) {
                    error(at(src, a, vw), "`active_days.at_least` (" + std::to_string(out.at_least) + ") is more than `last` (" +
                                              std::to_string(out.days) + " days): it could never hold");
                    ok = false;
                }
            }
            rule.uses_activity = true;
            out.text = "active on at least " + std::to_string(out.at_least) + " of the last " + std::to_string(out.days) + " days";
            return ok;
        }
        return false; // unknown key: already reported by check_keys
    }

    void compile_actions(const Source& src, const YAML::Node& d, const Where& w, Rule& rule)
    {
        std::vector<YAML::Node> items;
        if (d.IsSequence()) {
            for (const auto& item : d) items.push_back(item);
        } else if (d.IsMap()) {
            items.push_back(d);
        }
        if (items.empty()) {
            error(at(src, d, w), "`do` must list at least one action, e.g. - post: \"...\"");
            return;
        }
        for (const auto& item : items) {
            const auto iw = at(src, item, w);
            if (!item.IsMap() || item.size() != 1) {
                error(iw, "each action is one of: post, reply, welcome, assign_tag, remove_tag, written as `- post: \"text\"`");
                continue;
            }
            check_keys(src, item, {"post", "reply", "welcome", "assign_tag", "remove_tag"}, "an action");
            const auto it = item.begin();
            const YAML::Node key_node = it->first;
            const YAML::Node value = it->second;
            const auto k = key_node.Scalar();
            ActionSpec spec;
            if (k == "post") spec.kind = ActionSpec::Kind::post;
            else if (k == "reply") spec.kind = ActionSpec::Kind::reply;
            else if (k == "welcome") spec.kind = ActionSpec::Kind::welcome;
            else if (k == "assign_tag") spec.kind = ActionSpec::Kind::assign_tag;
            else if (k == "remove_tag") spec.kind = ActionSpec::Kind::remove_tag;
            else continue;
            const auto kw = at(src, key_node, iw);
            if (spec.kind == ActionSpec::Kind::reply && rule.trigger != Trigger::message) {
                error(kw, "`reply` answers a message; use `post` for `on: " + std::string(to_string(rule.trigger)) + "`");
                continue;
            }
            if (spec.kind == ActionSpec::Kind::welcome && rule.trigger != Trigger::contact_added) {
                error(kw, "`welcome` is the 1:1 welcome of a new contact (on: contact_added); use `post` in groups");
                continue;
            }
            if ((spec.kind == ActionSpec::Kind::assign_tag || spec.kind == ActionSpec::Kind::remove_tag) && rule.trigger == Trigger::schedule) {
                error(kw, "a scheduled rule is about groups, not a member: `" + k + "` has no one to tag");
                continue;
            }
            if (spec.kind == ActionSpec::Kind::post && rule.trigger == Trigger::contact_added) {
                error(kw, "contact_added is a 1:1 event with no group to post in; use `welcome`");
                continue;
            }
            if (spec.kind == ActionSpec::Kind::post && value.IsMap()) {
                if (compile_rich_post(src, value, kw, rule, spec)) rule.actions.push_back(std::move(spec));
                continue;
            }
            if (!value.IsScalar() || value.Scalar().empty()) {
                error(at(src, value, kw), "`" + k + "` needs " +
                                              (spec.kind == ActionSpec::Kind::assign_tag || spec.kind == ActionSpec::Kind::remove_tag ? "a tag name" : "the message text"));
                continue;
            }
            spec.body = compile_template(src, value, kw, rule.trigger);
            for (const auto& part : spec.body.parts()) {
                if (part.is_var && part.var == Var::member_name && !part.has_fallback) {
                    add(Sev::warning, at(src, value, kw),
                        "{{ member.name }} is empty while the member's name is not known yet; add a fallback, e.g. "
                        "{{ member.name | default: \"朋友\" }}");
                    break;
                }
            }
            rule.actions.push_back(std::move(spec));
        }
    }

    // `post: { text, image, link: {title, url, desc, picurl}, miniprogram: {title, appid, page,
    // pic_media_id} }`: text and/or content, validated here, sent by the adapter as it can.
    bool compile_rich_post(const Source& src, const YAML::Node& value, const Where& kw, const Rule& rule, ActionSpec& spec)
    {
        const std::size_t errors_before = result_.error_count();
        check_keys(src, value, {"text", "image", "link", "miniprogram"}, "a post");
        if (auto t = value["text"]; t.IsDefined()) {
            if (!t.IsScalar()) error(at(src, t, kw), "`text` must be a string");
            else spec.body = compile_template(src, t, kw, rule.trigger);
        }
        nlohmann::json items = nlohmann::json::array();
        auto url = [&](const YAML::Node& n, const char* what) -> std::string {
            if (!n.IsDefined()) return {};
            if (!n.IsScalar() || !(n.Scalar().starts_with("https://") || n.Scalar().starts_with("http://"))) {
                error(at(src, n, kw), std::string("`") + what + "` must be an http(s) URL");
                return {};
            }
            return n.Scalar();
        };
        auto required = [&](const YAML::Node& parent, const char* key, const char* what) -> std::string {
            auto n = parent[key];
            if (!n.IsDefined() || !n.IsScalar() || n.Scalar().empty()) {
                error(at(src, n.IsDefined() ? n : parent, kw), std::string(what) + " needs `" + key + "`");
                return {};
            }
            return n.Scalar();
        };
        if (auto img = value["image"]; img.IsDefined()) {
            if (auto u = url(img, "image"); !u.empty()) items.push_back({{"type", "image"}, {"url", u}});
        }
        if (auto link = value["link"]; link.IsDefined()) {
            if (!link.IsMap()) {
                error(at(src, link, kw), "`link` is {title, url, desc, picurl}");
            } else {
                check_keys(src, link, {"title", "url", "desc", "picurl"}, "a link card");
                nlohmann::json l{{"type", "link"}, {"title", required(link, "title", "a link card")}};
                if (auto u = url(link["url"], "url"); !u.empty()) l["url"] = u;
                else if (!link["url"].IsDefined()) error(at(src, link, kw), "a link card needs `url`");
                if (auto d = link["desc"]; d.IsDefined() && d.IsScalar()) l["desc"] = d.Scalar();
                if (auto p = url(link["picurl"], "picurl"); !p.empty()) l["picurl"] = p;
                items.push_back(std::move(l));
            }
        }
        if (auto mp = value["miniprogram"]; mp.IsDefined()) {
            if (!mp.IsMap()) {
                error(at(src, mp, kw), "`miniprogram` is {title, appid, page, pic_media_id}");
            } else {
                check_keys(src, mp, {"title", "appid", "page", "pic_media_id"}, "a mini-program card");
                items.push_back({{"type", "miniprogram"},
                                 {"title", required(mp, "title", "a mini-program card")},
                                 {"appid", required(mp, "appid", "a mini-program card")},
                                 {"page", required(mp, "page", "a mini-program card")},
                                 {"pic_media_id", required(mp, "pic_media_id", "a mini-program card")}});
            }
        }
        if (spec.body.empty() && items.empty()) error(at(src, value, kw), "a post needs `text` or content (image, link, miniprogram)");
        if (!items.empty()) spec.attachments = items.dump();
        return result_.error_count() == errors_before;
    }

    // ---- draws -------------------------------------------------------------------------------

    void compile_draws(const Source& src, const YAML::Node& root)
    {
        if (!root.IsMap()) return;
        const Where top{&src, 0};
        auto draws = root["draws"];
        if (!draws.IsDefined() || draws.IsNull()) return;
        if (!draws.IsSequence()) {
            error(at(src, draws, top), "`draws` must be a list of draws, each starting with \"- id: ...\"");
            return;
        }
        for (const auto& d : draws) compile_draw(src, d);
    }

    std::optional<std::int64_t> fen(const Source& src, const YAML::Node& n, const Where& w, std::string_view what, std::int64_t min)
    {
        auto v = scalar(src, n, w, what);
        if (!v) return std::nullopt;
        std::int64_t x = 0;
        const auto* b = v->data();
        const auto* e = b + v->size();
        auto [p, ec] = std::from_chars(b, e, x);
        if (ec != std::errc() || p != e || x < min || x > 100'000'000) {
            error(at(src, n, w), std::string(what) + ": \"" + *v + "\" is not a whole number of fen (分) from " + std::to_string(min) +
                                     "; amounts are integers in fen, e.g. 10000 for ¥100");
            return std::nullopt;
        }
        return x;
    }

    std::optional<int> count(const Source& src, const YAML::Node& n, const Where& w, std::string_view what, int min, int max)
    {
        auto v = scalar(src, n, w, what);
        if (!v) return std::nullopt;
        int x = 0;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
        if (ec != std::errc() || p != v->data() + v->size() || x < min || x > max) {
            error(at(src, n, w), std::string(what) + ": \"" + *v + "\" must be a whole number from " + std::to_string(min) + " to " +
                                     std::to_string(max));
            return std::nullopt;
        }
        return x;
    }

    void compile_prizes(const Source& src, const YAML::Node& pz, const Where& w, PrizeSpec& p)
    {
        if (!pz.IsMap() || pz.size() != 1) {
            error(at(src, pz, w), "`prizes` is one of { equal: {winners, amount_fen} }, { random: {winners, budget_fen, min_fen} } "
                                  "or { tiers: [ {name, winners, amount_fen}, ... ] }");
            return;
        }
        check_keys(src, pz, {"equal", "random", "tiers"}, "`prizes`");
        if (auto e = pz["equal"]; e.IsDefined()) {
            p.kind = PrizeSpec::Kind::equal;
            if (!e.IsMap()) { error(at(src, e, w), "`equal` is {winners, amount_fen}"); return; }
            check_keys(src, e, {"winners", "amount_fen"}, "`equal`");
            if (auto n = e["winners"]; !n.IsDefined()) error(at(src, e, w), "`equal` needs `winners`");
            else if (auto v = count(src, n, w, "`winners`", 1, 5000)) p.winners = *v;
            if (auto n = e["amount_fen"]; !n.IsDefined()) error(at(src, e, w), "`equal` needs `amount_fen`");
            else if (auto v = fen(src, n, w, "`amount_fen`", 1)) p.amount_fen = *v;
            p.budget_fen = p.amount_fen * p.winners;
        } else if (auto r = pz["random"]; r.IsDefined()) {
            p.kind = PrizeSpec::Kind::random;
            if (!r.IsMap()) { error(at(src, r, w), "`random` is {winners, budget_fen, min_fen}"); return; }
            check_keys(src, r, {"winners", "budget_fen", "min_fen"}, "`random`");
            if (auto n = r["winners"]; !n.IsDefined()) error(at(src, r, w), "`random` needs `winners`");
            else if (auto v = count(src, n, w, "`winners`", 1, 5000)) p.winners = *v;
            if (auto n = r["budget_fen"]; !n.IsDefined()) error(at(src, r, w), "`random` needs `budget_fen`");
            else if (auto v = fen(src, n, w, "`budget_fen`", 1)) p.budget_fen = *v;
            if (auto n = r["min_fen"]; n.IsDefined()) {
                if (auto v = fen(src, n, w, "`min_fen`", 1)) p.min_fen = *v;
            }
            if (p.winners > 0 && p.budget_fen > 0 && p.budget_fen < p.min_fen * p.winners) {
                error(at(src, r, w), "`random`: a budget of " + std::to_string(p.budget_fen) + " fen cannot give " + std::to_string(p.winners) +
                                         " winners " + std::to_string(p.min_fen) + " fen each");
            }
        } else if (auto t = pz["tiers"]; t.IsDefined()) {
            p.kind = PrizeSpec::Kind::tiers;
            if (!t.IsSequence() || t.size() == 0) { error(at(src, t, w), "`tiers` is a list of {name, winners, amount_fen}"); return; }
            std::set<std::string> names;
            for (const auto& tier : t) {
                const auto tw = at(src, tier, w);
                if (!tier.IsMap()) { error(tw, "a tier is {name, winners, amount_fen}"); continue; }
                check_keys(src, tier, {"name", "winners", "amount_fen"}, "a tier");
                PrizeTier pt;
                if (auto n = tier["name"]; !n.IsDefined()) error(tw, "a tier needs a `name`, e.g. 一等奖");
                else if (auto v = scalar(src, n, tw, "`name`")) {
                    pt.name = *v;
                    if (!names.insert(pt.name).second) error(at(src, n, tw), "tier \"" + pt.name + "\" is listed twice");
                }
                if (auto n = tier["winners"]; !n.IsDefined()) error(tw, "a tier needs `winners`");
                else if (auto v = count(src, n, tw, "`winners`", 1, 5000)) pt.winners = *v;
                if (auto n = tier["amount_fen"]; !n.IsDefined()) error(tw, "a tier needs `amount_fen`");
                else if (auto v = fen(src, n, tw, "`amount_fen`", 1)) pt.amount_fen = *v;
                p.winners += pt.winners;
                p.budget_fen += pt.amount_fen * pt.winners;
                p.tiers.push_back(std::move(pt));
            }
            if (p.winners > 5000) error(at(src, t, w), "at most 5000 winners per draw");
        }
    }

    void compile_draw(const Source& src, const YAML::Node& node)
    {
        const auto w = at(src, node, {});
        if (!node.IsMap()) {
            error(w, "a draw must be a mapping with id, enter, prizes, ...");
            return;
        }
        const std::size_t errors_before = result_.error_count();
        check_keys(src, node, {"id", "series", "description", "in", "enter", "opens", "closes", "eligible", "prizes", "payout", "messages",
                               "tag", "enabled"},
                   "a draw");
        DrawSpec d;
        d.file = src.name;
        d.line = src.position(w.pos).first;
        bool enabled = true;
        if (auto id = node["id"]; !id.IsDefined()) {
            error(w, "draw without `id`: every draw needs a stable id (rounds, entries and payouts are keyed by it)");
        } else if (auto v = scalar(src, id, w, "`id`")) {
            d.id = *v;
            if (d.id.empty() || d.id.size() > 64 || d.id.find_first_of(" \t/\x1f") != std::string::npos) {
                error(at(src, id, w), "draw id \"" + d.id + "\" must be 1-64 characters without spaces or '/'");
            } else if (auto it = draw_where_.find(d.id); it != draw_where_.end()) {
                error(at(src, id, w), "duplicate draw id \"" + d.id + "\", first used at " + location(it->second));
            } else {
                draw_where_.emplace(d.id, at(src, id, w));
            }
        }
        d.series = d.id;
        if (auto s = node["series"]; s.IsDefined()) {
            if (auto v = scalar(src, s, w, "`series`")) d.series = *v;
        }
        if (auto e = node["enabled"]; e.IsDefined()) {
            if (auto b = boolean(src, e, w, "`enabled`")) enabled = *b;
        }
        if (auto in = node["in"]; in.IsDefined()) (void)compile_in(src, in, w, d.all_groups, d.selections);
        if (auto en = node["enter"]; !en.IsDefined()) {
            error(w, "draw without `enter`: say how members enter, e.g. enter: { keyword: 抽奖 } or enter: { join: true }");
        } else if (!en.IsMap()) {
            error(at(src, en, w), "`enter` is { keyword: 抽奖 } and/or { join: true } (staff can always add entries)");
        } else {
            check_keys(src, en, {"keyword", "join"}, "`enter`");
            if (auto k = en["keyword"]; k.IsDefined()) {
                if (auto v = strings(src, k, w, "`keyword`", true)) {
                    for (const auto& kw : *v) {
                        auto n = normalize(kw, Fold::keyword);
                        if (n.empty()) {
                            error(at(src, k, w), "keyword \"" + kw + "\" is empty after normalisation");
                            continue;
                        }
                        d.keywords.push_back(kw);
                        d.keyword_norms.push_back(std::move(n));
                    }
                }
            }
            if (auto j = en["join"]; j.IsDefined()) {
                if (auto b = boolean(src, j, w, "`join`")) d.enter_by_join = *b;
            }
        }
        if (auto o = node["opens"]; o.IsDefined()) {
            d.has_opens = true;
            compile_schedule(src, o, w, d.opens);
        }
        if (auto c = node["closes"]; !c.IsDefined()) {
            error(w, "draw without `closes`: give `after: 2h`, `at: \"daily 21:00\"` and/or `entries: 50`");
        } else if (!c.IsMap()) {
            error(at(src, c, w), "`closes` is a mapping: { after: 2h }, { at: \"daily 21:00\" } and/or { entries: 50 }");
        } else {
            check_keys(src, c, {"after", "at", "entries"}, "`closes`");
            if (auto a = c["after"]; a.IsDefined()) {
                if (auto v = scalar(src, a, w, "`after`")) {
                    if (!parse_duration(*v, d.duration_ms) || d.duration_ms < 60'000 || d.duration_ms > 31 * 86'400'000LL) {
                        error(at(src, a, w), "`after`: \"" + *v + "\" is not a duration from 1m to 31d, e.g. 2h");
                    }
                }
            }
            if (auto a = c["at"]; a.IsDefined()) {
                d.has_closes_at = true;
                compile_schedule(src, a, w, d.closes_at);
            }
            if (auto n = c["entries"]; n.IsDefined()) {
                if (auto v = count(src, n, w, "`entries`", 1, 1'000'000)) d.close_entries = *v;
            }
            if (d.duration_ms == 0 && !d.has_closes_at && d.close_entries == 0 && c.size() == 0) {
                error(at(src, c, w), "`closes` needs `after`, `at` or `entries`");
            }
        }
        // Joining is the entry, so "in the group before the draw opened" cannot apply to it.
        d.eligibility.joined_before_open = !d.enter_by_join;
        if (auto el = node["eligible"]; el.IsDefined()) compile_eligibility(src, el, w, d);
        if (auto pz = node["prizes"]; !pz.IsDefined()) {
            error(w, "draw without `prizes`: e.g. prizes: { random: { winners: 10, budget_fen: 10000, min_fen: 100 } }");
        } else {
            compile_prizes(src, pz, w, d.prizes);
        }
        if (d.close_entries > 0 && d.prizes.winners > d.close_entries) {
            error(at(src, node["closes"]["entries"], w), "the draw closes at " + std::to_string(d.close_entries) + " entries but has " +
                                                             std::to_string(d.prizes.winners) + " winners");
        }
        if (auto p = node["payout"]; p.IsDefined()) {
            if (auto v = scalar(src, p, w, "`payout`")) {
                if (*v == "manual") d.payout = PayoutMethod::manual;
                else if (*v == "wechat_pay") d.payout = PayoutMethod::wechat_pay;
                else error(at(src, p, w), "`payout` is manual (a CSV for finance) or wechat_pay (WeCom enterprise red packets), not \"" + *v + "\"");
            }
        }
        if (auto m = node["messages"]; m.IsDefined()) {
            if (!m.IsMap()) {
                error(at(src, m, w), "`messages` is { open: \"...\", result: \"...\" }");
            } else {
                check_keys(src, m, {"open", "result"}, "`messages`");
                if (auto o = m["open"]; o.IsDefined()) {
                    if (!o.IsScalar()) error(at(src, o, w), "`open` must be a string");
                    else d.open_text = compile_template(src, o, w, Trigger::draw);
                    for (auto v : {Var::draw_seed, Var::draw_winners, Var::draw_digest}) {
                        if (d.open_text.uses(v)) {
                            error(at(src, o, w), "the opening message cannot show {{ " + std::string(to_string(v)) +
                                                     " }}: it is not known (or must stay secret) until the draw");
                        }
                    }
                }
                if (auto r = m["result"]; r.IsDefined()) {
                    if (!r.IsScalar()) error(at(src, r, w), "`result` must be a string");
                    else d.result_text = compile_template(src, r, w, Trigger::draw);
                }
            }
        }
        if (auto t = node["tag"]; t.IsDefined()) {
            if (!t.IsMap()) {
                error(at(src, t, w), "`tag` is { entrants: 参与抽奖, winners: 中奖 }");
            } else {
                check_keys(src, t, {"entrants", "winners"}, "`tag`");
                if (auto n = t["entrants"]; n.IsDefined()) {
                    if (auto v = scalar(src, n, w, "`entrants`")) d.entrant_tag = *v;
                }
                if (auto n = t["winners"]; n.IsDefined()) {
                    if (auto v = scalar(src, n, w, "`winners`")) d.winner_tag = *v;
                }
            }
        }
        if (d.keywords.empty() && !d.enter_by_join && result_.error_count() == errors_before) {
            add(Sev::warning, w, "draw \"" + d.id + "\" has no keyword and no join entry: only staff can add entries (qunbot lottery enter)");
        }
        if (result_.error_count() != errors_before || !enabled) return;
        set_.draws.push_back(std::move(d));
    }

    void compile_eligibility(const Source& src, const YAML::Node& el, const Where& w, DrawSpec& d)
    {
        if (!el.IsMap()) {
            error(at(src, el, w), "`eligible` is a mapping: joined_before_open, staff, blacklisted, tags, not_tags, not_won_within, active");
            return;
        }
        auto& e = d.eligibility;
        check_keys(src, el, {"joined_before_open", "staff", "blacklisted", "tags", "not_tags", "not_won_within", "active"}, "`eligible`");
        if (auto n = el["joined_before_open"]; n.IsDefined()) {
            if (auto b = boolean(src, n, w, "`joined_before_open`")) {
                e.joined_before_open = *b;
                if (*b && d.enter_by_join) error(at(src, n, w), "`joined_before_open: true` excludes everyone who enters by joining");
            }
        }
        if (auto n = el["staff"]; n.IsDefined()) {
            if (auto b = boolean(src, n, w, "`staff`")) e.allow_staff = *b;
        }
        if (auto n = el["blacklisted"]; n.IsDefined()) {
            if (auto b = boolean(src, n, w, "`blacklisted`")) e.exclude_blacklisted = !*b;
        }
        if (auto n = el["tags"]; n.IsDefined()) {
            if (auto v = strings(src, n, w, "`tags`", true)) e.tags_required = std::move(*v);
        }
        if (auto n = el["not_tags"]; n.IsDefined()) {
            if (auto v = strings(src, n, w, "`not_tags`", true)) e.tags_excluded = std::move(*v);
        }
        if (auto n = el["not_won_within"]; n.IsDefined()) {
            std::int64_t ms = 0;
            if (auto v = scalar(src, n, w, "`not_won_within`")) {
                if (!parse_duration(*v, ms) || ms < 86'400'000 || ms % 86'400'000 != 0 || ms > 366 * 86'400'000LL) {
                    error(at(src, n, w), "`not_won_within`: \"" + *v + "\" must be whole days, e.g. 7d (1d to 366d)");
                } else {
                    e.not_won_days = static_cast<int>(ms / 86'400'000);
                }
            }
        }
        if (auto a = el["active"]; a.IsDefined()) {
            if (!a.IsMap()) {
                error(at(src, a, w), "`active` is { days: 7, at_least: 2 }");
            } else {
                check_keys(src, a, {"days", "at_least"}, "`active`");
                if (auto n = a["days"]; !n.IsDefined()) error(at(src, a, w), "`active` needs `days`");
                else if (auto v = count(src, n, w, "`days`", 1, 60)) e.active_days = *v;
                if (auto n = a["at_least"]; !n.IsDefined()) error(at(src, a, w), "`active` needs `at_least`");
                else if (auto v = count(src, n, w, "`at_least`", 1, 60)) e.active_at_least = *v;
                if (e.active_at_least > e.active_days) error(at(src, a, w), "`at_least` cannot exceed `days`");
            }
        }
    }

    // Compiles a template and maps each error's offset in the value back to the file. The raw
    // text of a quoted or block scalar differs from its value (quotes, escapes, folding), so
    // the position is found by locating the same "{{" (or "}}") occurrence in the raw text.
    Template compile_template(const Source& src, const YAML::Node& value, const Where& fallback, Trigger trigger)
    {
        std::vector<TemplateError> errs;
        auto t = Template::compile(value.Scalar(), trigger, errs);
        const auto vw = at(src, value, fallback);
        const auto& v = value.Scalar();
        for (const auto& e : errs) {
            std::size_t raw = vw.pos;
            const bool closing = v.compare(e.offset, 2, "}}") == 0;
            const std::string_view marker = closing ? "}}" : "{{";
            // Which occurrence of the marker precedes the error (counting from 1).
            std::size_t nth = 0, last = 0;
            for (auto p = v.find(marker); p != std::string::npos && p <= e.offset; p = v.find(marker, p + 2)) {
                ++nth;
                last = p;
            }
            if (nth > 0) {
                std::size_t p = vw.pos;
                std::size_t found = 0;
                const std::string_view text(src.text);
                while (found < nth) {
                    p = text.find(marker, found == 0 ? p : p + 2);
                    if (p == std::string_view::npos) break;
                    ++found;
                }
                if (p != std::string_view::npos) raw = p + (e.offset - last);
            } else if (value.Tag() == "!") {
                raw += 1; // opening quote
            }
            error(Where{&src, raw}, e.message);
        }
        return t;
    }

    // Builds the trigger index: which rules every event must check, and which only when one of
    // their keywords occurs.
    static bool anchors(const Condition& c, std::vector<std::uint32_t>& out)
    {
        switch (c.op) {
        case Condition::Op::contains:
        case Condition::Op::exact: out.push_back(c.keyword_set); return true;
        case Condition::Op::all:
            for (const auto& child : c.children) {
                std::vector<std::uint32_t> sets;
                if (anchors(child, sets)) { out.insert(out.end(), sets.begin(), sets.end()); return true; }
            }
            return false;
        case Condition::Op::any: {
            std::vector<std::uint32_t> all;
            for (const auto& child : c.children) {
                if (!anchors(child, all)) return false;
            }
            out.insert(out.end(), all.begin(), all.end());
            return true;
        }
        default: return false;
        }
    }

    void finish()
    {
        set_.pattern_sets.resize(set_.keywords.pattern_count());
        set_.set_rules.resize(set_.keyword_set_count);
        for (std::uint32_t i = 0; i < set_.rules.size(); ++i) {
            const auto& r = set_.rules[i];
            if (r.wecom_template) {
                // WeCom sends it; the engine never evaluates it.
                set_.welcome_templates.emplace_back(r.id, r.template_text);
                continue;
            }
            ++set_.per_trigger[static_cast<std::size_t>(r.trigger)];
            set_.any_batch = set_.any_batch || r.batch_ms > 0;
            std::vector<std::uint32_t> sets;
            if (r.trigger == Trigger::message && r.has_when && anchors(r.when, sets)) {
                for (auto s : sets) set_.set_rules[s].push_back(i);
            } else {
                set_.unanchored[static_cast<std::size_t>(r.trigger)].push_back(i);
            }
        }
        std::uint64_t h = 1469598103934665603ull;
        for (const auto& s : sources_) {
            for (const char c : s.name + '\0' + s.text) {
                h ^= static_cast<unsigned char>(c);
                h *= 1099511628211ull;
            }
        }
        char buf[17];
        std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
        set_.fingerprint = buf;
    }

    std::vector<Source> sources_;
    LoadResult result_;
    RuleSet set_;
    std::map<std::string, ListDef> lists_;
    std::map<std::string, GroupDef> groups_;
    std::map<std::string, Where> rule_where_;
    std::map<std::string, Where> draw_where_;
};

} // namespace

std::vector<fs::path> rule_files(const fs::path& dir) { return list_dir(dir, false); }
std::vector<fs::path> rule_test_files(const fs::path& dir) { return list_dir(dir, true); }

LoadResult load_rule_sources(const std::vector<std::pair<std::string, std::string>>& sources)
{
    std::vector<Source> srcs;
    for (const auto& [name, text] : sources) srcs.push_back(Source{name, text, {}});
    auto r = Loader{}.run(std::move(srcs));
    r.sources = sources;
    return r;
}

LoadResult load_rules(const fs::path& dir)
{
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        LoadResult r;
        Diagnostic d;
        d.file = dir.string();
        d.message = "rule directory does not exist or is not a directory";
        r.diagnostics.push_back(std::move(d));
        return r;
    }
    std::vector<std::pair<std::string, std::string>> sources;
    LoadResult failed;
    for (const auto& p : rule_files(dir)) {
        std::ifstream in(p, std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        if (!in && !in.eof()) {
            Diagnostic d;
            d.file = p.string();
            d.message = "cannot read the file";
            failed.diagnostics.push_back(std::move(d));
            continue;
        }
        sources.emplace_back(p.string(), ss.str());
    }
    auto r = load_rule_sources(sources);
    if (!failed.diagnostics.empty()) {
        r.rules.reset();
        r.diagnostics.insert(r.diagnostics.begin(), failed.diagnostics.begin(), failed.diagnostics.end());
    }
    return r;
}

} // namespace qunbot::rules

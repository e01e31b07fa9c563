#include "bot/rule_tests.hpp"

#include "rules/engine.hpp"
#include "storage/journal.hpp"
#include "storage/rule_state.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <future>
#include <map>
#include <random>
#include <stdexcept>

namespace qunbot::bot {
namespace {

namespace fs = std::filesystem;

// A malformed test file: carries the position of the offending node.
struct SpecError : std::runtime_error {
    SpecError(const YAML::Node& n, const std::string& what)
        : std::runtime_error(what), line(n.IsDefined() ? n.Mark().line + 1 : 0), column(n.IsDefined() ? n.Mark().column + 1 : 0) {}
    int line;
    int column;
};

std::string str(const YAML::Node& n, const char* what)
{
    if (!n.IsDefined() || !n.IsScalar()) throw SpecError(n, std::string(what) + " must be text");
    return n.Scalar();
}

std::vector<std::string> str_list(const YAML::Node& n, const char* what)
{
    if (n.IsScalar()) return {n.Scalar()};
    if (!n.IsSequence()) throw SpecError(n, std::string(what) + " must be a list");
    std::vector<std::string> out;
    for (const auto& i : n) out.push_back(str(i, what));
    return out;
}

int integer(const YAML::Node& n, const char* what)
{
    try {
        if (n.IsScalar()) return n.as<int>();
    } catch (const YAML::Exception&) {
    }
    throw SpecError(n, std::string(what) + " must be a whole number");
}

std::int64_t duration_ms(const YAML::Node& n, const char* what)
{
    std::int64_t ms = 0;
    if (n.IsScalar() && (n.Scalar() == "0" || n.Scalar() == "0s")) return 0;
    if (!n.IsScalar() || !rules::parse_duration(n.Scalar(), ms)) throw SpecError(n, std::string(what) + " must be a duration like 0s, 30s, 5m");
    return ms;
}

void check_keys(const YAML::Node& map, std::initializer_list<std::string_view> allowed, const char* what)
{
    if (!map.IsMap()) throw SpecError(map, std::string(what) + " must be a mapping");
    for (auto it = map.begin(); it != map.end(); ++it) {
        const YAML::Node key = it->first;
        const auto k = key.Scalar();
        if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
            std::string list;
            for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
            throw SpecError(key, "unknown key \"" + k + "\" in " + what + " (allowed: " + list + ")");
        }
    }
}

// Local "YYYY-MM-DD HH:MM" to unix seconds.
std::int64_t parse_local(const YAML::Node& n, int utc_offset_s)
{
    std::tm tm{};
    const auto s = str(n, "`start`");
    if (std::sscanf(s.c_str(), "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min) != 5) {
        throw SpecError(n, "`start` must be \"YYYY-MM-DD HH:MM\" (local time)");
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm)) - utc_offset_s;
}

// A scratch database with the real journal, so tests exercise the same writes as the bot.
class Sandbox {
public:
    Sandbox(const rules::RuleSet& rules, int utc_offset_s, std::int64_t start_ms)
        : rules_(rules), offset_(utc_offset_s), now_(start_ms)
    {
        std::random_device rd;
        dir_ = fs::temp_directory_path() / ("qunbot-rules-test-" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(dir_);
        storage::Journal::Options o;
        o.path = (dir_ / "test.db").string();
        o.durability = storage::Durability::normal;
        o.now_ms = [this] { return now_.load(); };
        journal_ = std::make_unique<storage::Journal>(std::move(o));
        reader_ = std::make_unique<storage::StateReader>((dir_ / "test.db").string());
    }
    ~Sandbox()
    {
        reader_.reset();
        journal_.reset();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    void write(storage::WriteWork work)
    {
        std::promise<std::string> done;
        journal_->submit(std::move(work), [&done](std::string e) { done.set_value(std::move(e)); });
        if (auto e = done.get_future().get(); !e.empty()) throw std::runtime_error("sandbox write failed: " + e);
    }

    std::int64_t append(core::Event e)
    {
        std::promise<storage::AppendOutcome> done;
        journal_->append(std::move(e), [&done](storage::AppendOutcome o) { done.set_value(std::move(o)); });
        auto o = done.get_future().get();
        if (o.status == storage::AppendOutcome::Status::failed) throw std::runtime_error("sandbox journal: " + o.error);
        return o.event_id;
    }

    // Fires every batch due by `until` in deadline order, advancing the clock to each deadline.
    void run_timers(std::int64_t until, std::vector<core::Action>& actions)
    {
        for (;;) {
            auto batches = reader_->open_batches();
            if (batches.empty() || batches.front().due_ms > until) break;
            const auto& b = batches.front();
            now_ = std::max(now_.load(), b.due_ms);
            auto state = reader_->load_group(b.tenant, b.group_id, rules_, now_, offset_);
            auto d = rules::flush_due(rules_, state);
            commit(d, b.tenant, 0, actions);
        }
        now_ = std::max(now_.load(), until);
    }

    rules::Decision process(core::Event e, std::vector<core::Action>& actions, bool explain)
    {
        run_timers(e.time * 1000, actions);
        const auto tenant = e.tenant;
        const auto id = append(e);
        auto state = reader_->load(e, rules_, now_, offset_);
        rules::EvaluateOptions eo;
        eo.explain = explain;
        eo.cause_event_id = id;
        auto d = rules::evaluate(rules_, e, state, eo);
        commit(d, tenant, id, actions);
        return d;
    }

    void commit(const rules::Decision& d, const std::string& tenant, std::int64_t id, std::vector<core::Action>& actions)
    {
        const auto now = now_.load();
        write([&d, &tenant, id, now](SQLite::Database& db) { storage::apply_decision(db, d, tenant, id, now, "test"); });
        actions.insert(actions.end(), d.actions.begin(), d.actions.end());
    }

    void set_now(std::int64_t ms) { now_ = ms; }
    [[nodiscard]] std::int64_t now() const { return now_; }

private:
    const rules::RuleSet& rules_;
    int offset_;
    std::atomic<std::int64_t> now_;
    fs::path dir_;
    std::unique_ptr<storage::Journal> journal_;
    std::unique_ptr<storage::StateReader> reader_;
};

struct Scenario {
    std::string tenant = "test-corp";
    std::int64_t start_s = 0;
    YAML::Node node;
};

void set_up(Sandbox& box, const YAML::Node& tc, const Scenario& sc, int& serial)
{
    std::string only_group;
    if (auto groups = tc["groups"]; groups.IsDefined()) {
        if (!groups.IsMap()) throw SpecError(groups, "`groups` maps group ids to {name, owner, member_count, tags}");
        for (auto it = groups.begin(); it != groups.end(); ++it) {
            const YAML::Node key = it->first;
            const YAML::Node g = it->second;
            check_keys(g, {"name", "owner", "member_count", "tags"}, "a group");
            const auto id = str(key, "group id");
            only_group = groups.size() == 1 ? id : "";
            const auto name = g["name"].IsDefined() ? str(g["name"], "`name`") : "";
            const auto owner = g["owner"].IsDefined() ? str(g["owner"], "`owner`") : "";
            const int count = g["member_count"].IsDefined() ? integer(g["member_count"], "`member_count`") : 0;
            const auto tags = g["tags"].IsDefined() ? str_list(g["tags"], "`tags`") : std::vector<std::string>{};
            const auto tenant = sc.tenant;
            const auto now = box.now();
            box.write([=](SQLite::Database& db) {
                SQLite::Statement st(db, "INSERT INTO chat_groups (tenant, group_id, app, status, name, owner, needs_sync, created_at, updated_at)"
                                         " VALUES (?, ?, 'test', 'active', ?, ?, 0, ?, ?)");
                st.bind(1, tenant);
                st.bind(2, id);
                st.bind(3, name);
                st.bind(4, owner);
                st.bind(5, now / 1000);
                st.bind(6, now / 1000);
                st.exec();
                for (int i = 0; i < count; ++i) {
                    SQLite::Statement m(db, "INSERT INTO group_members (tenant, group_id, member_id, present) VALUES (?, ?, ?, 1)");
                    m.bind(1, tenant);
                    m.bind(2, id);
                    m.bind(3, "existing-member-" + std::to_string(i));
                    m.exec();
                }
                for (const auto& t : tags) storage::set_group_tag(db, tenant, id, t, true, now);
            });
        }
    }
    if (auto members = tc["members"]; members.IsDefined()) {
        if (!members.IsMap()) throw SpecError(members, "`members` maps member ids to {name, tags, active_days, group}");
        for (auto it = members.begin(); it != members.end(); ++it) {
            const YAML::Node key = it->first;
            const YAML::Node m = it->second;
            check_keys(m, {"name", "tags", "active_days", "group"}, "a member");
            const auto id = str(key, "member id");
            const auto name = m["name"].IsDefined() ? str(m["name"], "`name`") : "";
            const auto tags = m["tags"].IsDefined() ? str_list(m["tags"], "`tags`") : std::vector<std::string>{};
            const auto tenant = sc.tenant;
            const auto now = box.now();
            box.write([=](SQLite::Database& db) {
                if (!name.empty()) storage::set_member_name(db, tenant, id, name, now);
                for (const auto& t : tags) storage::set_manual_tag(db, tenant, id, t, true, "test set-up", now);
            });
            if (auto days = m["active_days"]; days.IsDefined()) {
                const auto group = m["group"].IsDefined() ? str(m["group"], "`group`") : only_group;
                if (group.empty()) throw SpecError(m, "`active_days` needs `group:` when the test defines several groups");
                if (!days.IsSequence()) throw SpecError(days, "`active_days` lists days ago with messages, e.g. [0, 1, 3]");
                for (const auto& d : days) {
                    const int ago = integer(d, "`active_days` entry");
                    if (ago < 0 || ago > 60) throw SpecError(d, "`active_days` entries are 0..60 (days ago)");
                    core::Event e;
                    e.kind = core::EventKind::message;
                    e.platform = "wecom";
                    e.app = "test";
                    e.tenant = tenant;
                    e.dedup_key = "setup/" + std::to_string(++serial);
                    e.time = sc.start_s - static_cast<std::int64_t>(ago) * 86400;
                    e.group_id = group;
                    e.actor = id;
                    e.message_type = "text";
                    e.raw_type = "test/setup";
                    box.append(std::move(e));
                }
            }
        }
    }
}

core::Event make_event(const YAML::Node& ev, const Scenario& sc, int& serial)
{
    check_keys(ev, {"at", "member_joined", "member_left", "message", "contact_added"}, "an event");
    core::Event e;
    e.platform = "wecom";
    e.app = "test";
    e.tenant = sc.tenant;
    e.dedup_key = "test/" + std::to_string(++serial);
    const std::int64_t at = ev["at"].IsDefined() ? duration_ms(ev["at"], "`at`") : 0;
    e.time = sc.start_s + at / 1000;
    const YAML::Node* body = nullptr;
    YAML::Node b;
    for (const char* k : {"member_joined", "member_left", "message", "contact_added"}) {
        if (ev[k].IsDefined()) {
            if (body) throw SpecError(ev, "one event per list entry");
            b = ev[k];
            body = &b;
            e.kind = core::event_kind_from_string(k);
        }
    }
    if (!body) throw SpecError(ev, "an event is one of member_joined, member_left, message, contact_added");
    if (e.kind == core::EventKind::member_joined || e.kind == core::EventKind::member_left) {
        check_keys(b, {"group", "members", "scene"}, "a join/leave");
        e.group_id = str(b["group"], "`group`");
        e.members = str_list(b["members"], "`members`");
        e.actor = "sys";
        const bool join = e.kind == core::EventKind::member_joined;
        e.raw_type = join ? "change_external_chat/update/add_member" : "change_external_chat/update/del_member";
        const auto scene = b["scene"].IsDefined() ? str(b["scene"], "`scene`") : (join ? "invitation" : "left");
        if (join && scene == "qr_code") e.scene = 3;
        else if (join && scene == "invitation") e.scene = 0;
        else if (!join && scene == "left") e.scene = 0;
        else if (!join && scene == "removed") e.scene = 1;
        else throw SpecError(b["scene"], join ? "join scene is qr_code or invitation" : "quit scene is left or removed");
    } else if (e.kind == core::EventKind::message) {
        check_keys(b, {"group", "from", "text", "type"}, "a message");
        e.group_id = b["group"].IsDefined() ? str(b["group"], "`group`") : "";
        e.actor = str(b["from"], "`from`");
        e.text = b["text"].IsDefined() ? str(b["text"], "`text`") : "";
        e.message_type = b["type"].IsDefined() ? str(b["type"], "`type`") : "text";
        e.message_id = "msg-" + std::to_string(serial);
        e.raw_type = "msg/" + e.message_type;
    } else {
        check_keys(b, {"staff", "contact", "state", "welcome_code"}, "a contact_added");
        e.actor = str(b["staff"], "`staff`");
        e.subject = str(b["contact"], "`contact`");
        e.state = b["state"].IsDefined() ? str(b["state"], "`state`") : "";
        e.welcome_code = b["welcome_code"].IsDefined() ? str(b["welcome_code"], "`welcome_code`") : "WELCOMECODE-" + std::to_string(serial);
        e.raw_type = "change_external_contact/add_external_contact";
    }
    return e;
}

Scenario scenario(const YAML::Node& tc, int utc_offset_s)
{
    Scenario sc;
    sc.node = tc;
    if (tc["tenant"].IsDefined()) sc.tenant = str(tc["tenant"], "`tenant`");
    // A fixed Monday morning by default, so date-formatted templates have a stable expectation.
    if (tc["start"].IsDefined()) {
        sc.start_s = parse_local(tc["start"], utc_offset_s);
    } else {
        std::tm tm{};
        tm.tm_year = 2026 - 1900;
        tm.tm_mon = 0;
        tm.tm_mday = 5;
        tm.tm_hour = 10;
        sc.start_s = static_cast<std::int64_t>(timegm(&tm)) - utc_offset_s; // 2026-01-05 10:00 local
    }
    return sc;
}

// Compares one expected action (a mapping `kind: {field: value}`) with an actual one.
std::string mismatch(const YAML::Node& exp, const core::Action& a)
{
    if (!exp.IsMap() || exp.size() != 1) throw SpecError(exp, "an expected action is `kind: {fields}`, e.g. post: {text: ...}");
    const auto it = exp.begin();
    const YAML::Node kn = it->first;
    const YAML::Node fields = it->second;
    const auto kind = kn.Scalar();
    core::ActionKind k{};
    if (!core::action_kind_from_string(kind, k)) throw SpecError(kn, "unknown action kind \"" + kind + "\"");
    if (k != a.kind) return "kind: expected " + kind + ", got " + std::string(core::to_string(a.kind));
    if (fields.IsNull()) return {};
    check_keys(fields, {"rule", "group", "target", "member", "staff", "text", "tag", "mentions", "welcome_code"}, "an expected action");
    for (auto f = fields.begin(); f != fields.end(); ++f) {
        const YAML::Node fk = f->first;
        const YAML::Node fv = f->second;
        const auto name = fk.Scalar();
        if (name == "mentions") {
            const auto want = str_list(fv, "`mentions`");
            if (want != a.mentions) return "mentions differ";
            continue;
        }
        const std::string want = str(fv, name.c_str());
        const std::string got = name == "rule" ? a.rule_id : name == "group" ? a.group_id
                              : name == "target" || name == "member" ? a.target : name == "staff" ? a.staff
                              : name == "welcome_code" ? a.welcome_code : a.text;
        if (want != got) return name + ": expected \"" + want + "\", got \"" + got + "\"";
    }
    return {};
}

} // namespace

RuleTestReport run_rule_tests(const fs::path& dir, const rules::RuleSet& rules, int utc_offset_s)
{
    RuleTestReport r;
    for (const auto& file : rules::rule_test_files(dir)) {
        ++r.files;
        const auto fname = file.string();
        YAML::Node root;
        try {
            root = YAML::LoadFile(fname);
        } catch (const YAML::Exception& e) {
            ++r.failed;
            r.text += fname + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) + ": error: YAML syntax: " + e.msg + "\n";
            continue;
        }
        if (!root.IsMap() || !root["tests"].IsDefined() || !root["tests"].IsSequence()) {
            ++r.failed;
            r.text += fname + ":1:1: error: a rule test file has `tests:`, a list of test cases\n";
            continue;
        }
        for (const auto& tc : root["tests"]) {
            std::string name = "(unnamed)";
            try {
                check_keys(tc, {"name", "start", "tenant", "groups", "members", "events", "expect", "run_until"}, "a test case");
                name = str(tc["name"], "`name`");
                const auto sc = scenario(tc, utc_offset_s);
                Sandbox box(rules, utc_offset_s, sc.start_s * 1000);
                int serial = 0;
                set_up(box, tc, sc, serial);
                std::vector<core::Action> actions;
                std::int64_t last = sc.start_s * 1000;
                if (!tc["events"].IsDefined() || !tc["events"].IsSequence()) throw SpecError(tc, "a test case needs `events:`, a list");
                for (const auto& ev : tc["events"]) {
                    auto e = make_event(ev, sc, serial);
                    if (e.time * 1000 < last) throw SpecError(ev, "events must be in time order");
                    last = e.time * 1000;
                    box.set_now(std::max(box.now(), last));
                    box.process(std::move(e), actions, false);
                }
                // Let the clock run: batches still open close at their deadlines.
                const std::int64_t until = tc["run_until"].IsDefined() ? sc.start_s * 1000 + duration_ms(tc["run_until"], "`run_until`")
                                                                       : last + 24 * 3600 * 1000LL;
                box.run_timers(until, actions);
                const auto expect = tc["expect"];
                if (!expect.IsDefined() || !(expect.IsSequence() || expect.IsNull())) {
                    throw SpecError(tc, "a test case needs `expect:`, the list of actions (or [] for none)");
                }
                std::string problems;
                const std::size_t n_exp = expect.IsSequence() ? expect.size() : 0;
                for (std::size_t i = 0; i < std::max(n_exp, actions.size()); ++i) {
                    if (i >= n_exp) { problems += "    unexpected action: " + actions[i].to_json() + "\n"; continue; }
                    if (i >= actions.size()) {
                        problems += "    missing action #" + std::to_string(i + 1) + " (line " + std::to_string(expect[i].Mark().line + 1) + ")\n";
                        continue;
                    }
                    if (auto m = mismatch(expect[i], actions[i]); !m.empty()) {
                        problems += "    action #" + std::to_string(i + 1) + ": " + m + "\n      actual: " + actions[i].to_json() + "\n";
                    }
                }
                if (problems.empty()) {
                    ++r.passed;
                    r.text += "ok    " + name + "\n";
                } else {
                    ++r.failed;
                    r.text += "FAIL  " + name + " (" + fname + ":" + std::to_string(tc.Mark().line + 1) + ")\n" + problems;
                }
            } catch (const SpecError& e) {
                ++r.failed;
                r.text += "FAIL  " + name + "\n    " + fname + ":" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": error: " + e.what() + "\n";
            } catch (const std::exception& e) {
                ++r.failed;
                r.text += "FAIL  " + name + "\n    " + fname + ": error: " + e.what() + "\n";
            }
        }
    }
    if (r.files == 0) r.text += "no *.test.yaml files in " + dir.string() + "\n";
    r.text += std::to_string(r.passed) + " passed, " + std::to_string(r.failed) + " failed\n";
    return r;
}

bool explain_event(const fs::path& file, const rules::RuleSet& rules, int utc_offset_s, std::string& out)
{
    try {
        const auto root = YAML::LoadFile(file.string());
        check_keys(root, {"start", "tenant", "groups", "members", "events", "event"}, "an explain scenario");
        if (!root["event"].IsDefined()) throw SpecError(root, "an explain scenario needs `event:` (and optionally groups, members, earlier events)");
        const auto sc = scenario(root, utc_offset_s);
        Sandbox box(rules, utc_offset_s, sc.start_s * 1000);
        int serial = 0;
        set_up(box, root, sc, serial);
        std::vector<core::Action> actions;
        if (root["events"].IsDefined()) {
            if (!root["events"].IsSequence()) throw SpecError(root["events"], "`events` is a list of earlier events");
            for (const auto& ev : root["events"]) box.process(make_event(ev, sc, serial), actions, false);
        }
        auto e = make_event(root["event"], sc, serial);
        box.set_now(std::max(box.now(), e.time * 1000));
        std::vector<core::Action> result;
        const auto d = box.process(std::move(e), result, true);
        out += "rules version " + rules.fingerprint + "\n";
        if (d.trace.empty()) out += "no rule reacts to this kind of event\n";
        for (const auto& t : d.trace) {
            const auto* rule = rules.find(t.rule_id);
            out += "  " + t.rule_id + (rule ? " (" + rule->file + ":" + std::to_string(rule->line) + ")" : std::string()) + ": " +
                   std::string(rules::to_string(t.outcome)) + (t.detail.empty() ? "" : ": " + t.detail) + "\n";
        }
        if (d.stopped) out += "  (a `stop: true` rule ended the pipeline)\n";
        out += result.empty() ? "no actions\n" : "actions:\n";
        for (const auto& a : result) out += "  " + a.to_json() + "\n";
        return true;
    } catch (const SpecError& e) {
        out = file.string() + ":" + std::to_string(e.line) + ":" + std::to_string(e.column) + ": error: " + e.what() + "\n";
    } catch (const YAML::Exception& e) {
        out = file.string() + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) + ": error: " + e.msg + "\n";
    } catch (const std::exception& e) {
        out = file.string() + ": error: " + e.what() + "\n";
    }
    return false;
}

} // namespace qunbot::bot

#include "bot/lottery_cli.hpp"

#include "bot/cli_util.hpp"
#include "bot/config.hpp"
#include "rules/loader.hpp"
#include "storage/database.hpp"
#include "storage/draw_state.hpp"

#include <CLI/CLI.hpp>
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include <filesystem>
#include <iostream>

namespace qunbot::bot {

namespace {

struct Context {
    Config config;
    std::string database;
    std::shared_ptr<const rules::RuleSet> rules; // may be null when the rule files are broken
    int offset = 8 * 3600;
};

std::optional<Context> context(const LotteryArgs& args, bool need_rules, int& status)
{
    auto config = load_config(args.config);
    if (!config) {
        status = fail(config.error().message);
        return std::nullopt;
    }
    Context c;
    c.config = std::move(*config);
    c.database = args.database.empty() ? c.config.database : args.database;
    c.offset = c.config.rules.utc_offset_minutes * 60;
    auto loaded = rules::load_rules(args.rules.empty() ? c.config.rules.dir : args.rules);
    if (loaded.ok()) {
        c.rules = loaded.rules;
    } else if (need_rules) {
        for (const auto& d : loaded.diagnostics) std::cerr << d.format() << "\n";
        status = fail("the rule files have errors");
        return std::nullopt;
    }
    return c;
}

const rules::DrawSpec* spec_of(const Context& c, const std::string& draw_id)
{
    return c.rules ? c.rules->find_draw(draw_id) : nullptr;
}

void print_round(const storage::DrawRound& r)
{
    std::cout << r.id << "  " << r.draw_id << "  group " << r.group_id << "  " << r.status << "  opened " << local_time(r.opened_ms)
              << "  closes " << (r.closes_at_ms ? local_time(r.closes_at_ms) : std::string("-"))
              << (r.close_entries ? " or at " + std::to_string(r.close_entries) + " entries" : std::string()) << "  entries "
              << r.entries << "  prizes " << r.prizes.describe() << "  payout " << r.payout << "\n";
}

int show(SQLite::Database& db, std::int64_t id)
{
    const auto r = storage::find_round(db, id);
    if (!r) return fail("no draw round " + std::to_string(id));
    print_round(*r);
    std::cout << "  slot " << r->slot << "\n  commitment " << r->commitment << "  (sha256 of the seed, posted at the opening)\n";
    if (r->status == "drawn") {
        std::cout << "  seed " << r->seed << "\n  entries digest " << r->digest << "\n  drawn " << local_time(r->drawn_ms) << " by "
                  << r->closed_by << "\n";
    } else {
        std::cout << "  seed: revealed at the draw\n";
    }
    std::cout << "entries:\n";
    for (const auto& e : storage::round_entries(db, id)) std::cout << "  " << e.member << "  " << local_time(e.entered_ms) << "  " << e.via << "\n";
    const auto rejected = storage::round_rejections(db, id);
    if (!rejected.empty()) {
        std::cout << "turned away:\n";
        for (const auto& [m, why] : rejected) std::cout << "  " << m << "  " << why << "\n";
    }
    std::vector<std::string> tiers;
    const auto picks = storage::round_picks(db, id, &tiers);
    if (!picks.empty()) {
        std::cout << "picks:\n";
        for (std::size_t i = 0; i < picks.size(); ++i) {
            const auto& p = picks[i];
            std::cout << "  #" << p.index << "  rank " << (p.rank + 1) << (tiers[i].empty() ? "" : " " + tiers[i]) << "  " << p.member << "  "
                      << rules::format_fen(p.amount_fen) << (p.replaced ? "  (rerolled)" : "") << "\n";
        }
    }
    const auto payouts = storage::round_payouts(db, id);
    if (!payouts.empty()) {
        std::cout << "payouts:\n";
        for (const auto& p : payouts) {
            std::cout << "  " << p.id << "  " << p.member << "  " << rules::format_fen(p.amount_fen) << "  " << p.method << "  " << p.status
                      << "  bill " << p.billno << (p.detail.empty() ? "" : "  " + p.detail) << "\n";
        }
    }
    return 0;
}

// Runs `work` in one transaction. It is committed when `work` returns 0, or when it sets
// `keep` (a refusal that is itself worth recording, e.g. why an entry was turned away).
int write_tx(const std::string& database, const std::function<int(SQLite::Database&, bool& keep)>& work)
{
    auto db = storage::open_for_writing(database, storage::Durability::full);
    SQLite::Transaction tx(*db);
    bool keep = false;
    const int rc = work(*db, keep);
    if (rc == 0 || keep) tx.commit();
    return rc;
}

int run_blacklist(const LotteryArgs& args)
{
    int status = 0;
    auto c = context(args, false, status);
    if (!c) return status;
    std::string tenant;
    for (const auto& a : c->config.apps) {
        if (!a.corp_id.empty()) {
            tenant = a.corp_id;
            break;
        }
    }
    if (tenant.empty()) return fail("no app with a corp_id in the configuration");
    const auto now = wall_now_ms();
    if (args.verb == "blacklist-list" || args.verb == "blacklist-history") {
        if (!std::filesystem::exists(c->database)) return fail("no database at " + c->database);
        auto db = storage::open_for_reading(c->database);
        if (args.verb == "blacklist-list") {
            for (const auto& [m, why] : storage::blacklist_list(*db, tenant)) std::cout << m << "  " << why << "\n";
        } else {
            for (const auto& h : storage::blacklist_history(*db, tenant, args.limit)) {
                std::cout << local_time(h.at_ms) << "  " << h.member << "  " << (h.added ? "added" : "removed") << " by " << h.by
                          << (h.reason.empty() ? "" : ": " + h.reason) << "\n";
            }
        }
        return 0;
    }
    return write_tx(c->database, [&](SQLite::Database& db, bool&) {
        if (args.verb == "blacklist-add") {
            const bool added = storage::blacklist_add(db, tenant, args.member, args.reason.empty() ? "staff" : args.reason, now,
                                                      args.by.empty() ? "staff" : args.by);
            std::cout << (added ? "blacklisted: " : "already blacklisted: ") << args.member << "\n";
        } else {
            const bool removed = storage::blacklist_remove(db, tenant, args.member, args.by.empty() ? "staff" : args.by, args.reason, now);
            std::cout << (removed ? "removed from the blacklist: " : "was not blacklisted: ") << args.member << "\n";
        }
        return 0;
    });
}

} // namespace

void add_lottery_commands(CLI::App& cli, LotteryArgs& a)
{
    auto* lot = cli.add_subcommand("lottery", "Draws (红包抽奖): rounds, entries, the draw, rerolls, verification, the payout ledger");
    lot->require_subcommand(1);
    lot->add_option("--config", a.config, "Configuration (rule directory, database)");
    lot->add_option("--rules", a.rules, "Rule directory (overrides the configuration)");
    lot->add_option("--db", a.database, "SQLite database path (overrides the configuration)");
    auto verb = [&a](CLI::App* sub, const char* name) {
        sub->callback([&a, name] { a.verb = name; });
        sub->fallthrough();
        return sub;
    };
    auto* list = verb(lot->add_subcommand("list", "Rounds, newest first"), "list");
    list->add_option("--draw", a.draw, "Only rounds of this draw");
    list->add_option("--limit", a.limit, "At most this many");
    verb(lot->add_subcommand("show", "One round: commitment, entries, who was turned away and why, picks, payouts"), "show")
        ->add_option("id", a.id, "Round id")->required();
    auto* open = verb(lot->add_subcommand("open", "Open a round of a draw in one group now (posts the commitment)"), "open");
    open->add_option("draw", a.draw, "Draw id")->required();
    open->add_option("--group", a.group, "Group chat id (must be in the directory)")->required();
    open->add_option("--run-id", a.run_id, "Names this opening: the same run id never opens twice (default: the current time)");
    auto* enter = verb(lot->add_subcommand("enter", "Add an entry by hand (staff); eligibility rules other than membership still apply"), "enter");
    enter->add_option("id", a.id, "Round id")->required();
    enter->add_option("member", a.member, "Member id")->required();
    auto* draw = verb(lot->add_subcommand("draw", "Draw an open round now"), "draw");
    draw->add_option("id", a.id, "Round id")->required();
    draw->add_flag("--now", a.now, "Draw it now, before its closing time");
    auto* reroll = verb(lot->add_subcommand("reroll", "Replace a winner (ineligible, unreachable) with the next pick"), "reroll");
    reroll->add_option("id", a.id, "Round id")->required();
    reroll->add_option("member", a.member, "The winner to replace")->required();
    reroll->add_option("--reason", a.reason, "Why (shown in the group and kept)")->required();
    verb(lot->add_subcommand("verify", "Recompute a drawn round from the stored seed and entries; exit 1 on any mismatch"), "verify")
        ->add_option("id", a.id, "Round id")->required();
    auto* exp = verb(lot->add_subcommand("export", "The round's payout ledger for finance"), "export");
    exp->add_option("id", a.id, "Round id")->required();
    exp->add_flag("--csv", a.csv, "As CSV (the only format)")->required();
    auto* payout = verb(lot->add_subcommand("payout", "One payout: retry (held / check / failed, same bill number) or mark paid by hand"), "payout");
    payout->add_option("action", a.payout_verb, "retry or paid")->required()->check(CLI::IsMember({"retry", "paid"}));
    payout->add_option("id", a.id, "Payout id (see `lottery show`)")->required();
    payout->add_option("--reason", a.reason, "What was checked (kept with the payout)");

    auto* bl = cli.add_subcommand("blacklist", "The shared blacklist (every group; draws and moderation rules): add, remove, list, history");
    bl->require_subcommand(1);
    bl->add_option("--config", a.config, "Configuration (database, corp id)");
    bl->add_option("--db", a.database, "SQLite database path (overrides the configuration)");
    auto* add = verb(bl->add_subcommand("add", "Blacklist a member"), "blacklist-add");
    add->add_option("member", a.member, "Member id")->required();
    add->add_option("--reason", a.reason, "Why");
    add->add_option("--by", a.by, "Who adds them (kept with the entry)");
    auto* remove = verb(bl->add_subcommand("remove", "Take a member off the blacklist"), "blacklist-remove");
    remove->add_option("member", a.member, "Member id")->required();
    remove->add_option("--reason", a.reason, "Why");
    remove->add_option("--by", a.by, "Who takes them off (kept in the history)");
    verb(bl->add_subcommand("history", "Who added and removed whom, and why"), "blacklist-history");
    verb(bl->add_subcommand("list", "The blacklist"), "blacklist-list");
}

int run_lottery_commands(const LotteryArgs& args, bool& handled)
{
    handled = !args.verb.empty();
    if (!handled) return 0;
    if (args.verb.starts_with("blacklist-")) return run_blacklist(args);
    const bool need_rules = args.verb == "open";
    int status = 0;
    auto c = context(args, need_rules, status);
    if (!c) return status;
    const auto now = wall_now_ms();
    const auto& v = args.verb;
    if (v == "list" || v == "show" || v == "verify" || v == "export") {
        if (!std::filesystem::exists(c->database)) return fail("no database at " + c->database + " (start the bot once, or pass --db)");
        auto db = storage::open_for_reading(c->database);
        if (v == "list") {
            for (const auto& r : storage::list_rounds(*db, args.draw, args.limit)) print_round(r);
            return 0;
        }
        if (v == "show") return show(*db, args.id);
        if (v == "export") {
            if (!storage::find_round(*db, args.id)) return fail("no draw round " + std::to_string(args.id));
            std::cout << storage::payouts_csv(*db, args.id);
            return 0;
        }
        const auto problems = storage::verify_round(*db, args.id);
        if (problems.empty()) {
            const auto r = storage::find_round(*db, args.id);
            std::cout << "round " << args.id << ": verified. sha256(seed) equals the commitment posted at the opening, and the "
                      << r->entries << " sorted entries with that seed give exactly the stored winners and amounts\n";
            return 0;
        }
        std::cout << "round " << args.id << ": DOES NOT VERIFY\n";
        for (const auto& p : problems) std::cout << "  " << p << "\n";
        return 1;
    }
    return write_tx(c->database, [&](SQLite::Database& db, bool& keep) -> int {
        if (v == "open") {
            const auto* spec = spec_of(*c, args.draw);
            if (!spec) return fail("no draw \"" + args.draw + "\" in the rule files");
            SQLite::Statement st(db, "SELECT tenant, app, name, owner FROM chat_groups WHERE group_id = ? AND status = 'active'");
            st.bind(1, args.group);
            if (!st.executeStep()) return fail("group " + args.group + " is not an active group in the directory");
            rules::GroupInfo g;
            g.id = args.group;
            g.name = st.getColumn(2).getString();
            g.owner = st.getColumn(3).getString();
            const auto id = storage::open_round(db, *spec, st.getColumn(0).getString(), st.getColumn(1).getString(), g,
                                                "manual:" + (args.run_id.empty() ? std::to_string(now) : args.run_id), now, c->offset);
            if (!id) {
                std::cout << "run " << args.run_id << " of " << args.draw << " in " << args.group << " was opened before: nothing done\n";
                return 0;
            }
            std::cout << "opened round " << *id << " of " << args.draw << " in " << args.group << "\n";
            return 0;
        }
        const auto round = storage::find_round(db, args.id);
        if (v != "payout" && !round) return fail("no draw round " + std::to_string(args.id));
        if (v == "enter") {
            const auto r = storage::enter_round(db, spec_of(*c, round->draw_id), args.id, args.member, "staff", now, c->offset);
            switch (r.status) {
            case storage::EntryResult::Status::entered:
                std::cout << "entered: " << args.member << (r.drew ? " (the round was full and has been drawn)" : "") << "\n";
                return 0;
            case storage::EntryResult::Status::already: std::cout << "already entered: " << args.member << "\n"; return 0;
            case storage::EntryResult::Status::rejected:
                keep = true; // the reason is kept with the round (`lottery show`)
                return fail(args.member + " may not enter: " + r.reason);
            case storage::EntryResult::Status::closed: return fail("round " + std::to_string(args.id) + " takes no entries: " + r.reason);
            }
            return 1;
        }
        if (v == "draw") {
            if (!args.now) return fail("`lottery draw` needs --now (drawing before the closing time is a staff decision)");
            const auto r = storage::draw_round(db, spec_of(*c, round->draw_id), args.id, now, c->offset, "staff");
            if (!r.drawn) return fail("round " + std::to_string(args.id) + " is " + round->status + ": nothing to draw");
            std::cout << "drawn: " << r.entries << " entries, " << r.winners << " winner(s), " << rules::format_fen(r.total_fen) << "\n";
            return 0;
        }
        if (v == "reroll") {
            const auto r = storage::reroll(db, spec_of(*c, round->draw_id), args.id, args.member, args.reason, now, c->offset);
            if (!r.ok) return fail(r.message);
            std::cout << r.message << "\n";
            return 0;
        }
        // payout retry|paid
        const auto p = storage::find_payout(db, args.id);
        if (!p) return fail("no payout " + std::to_string(args.id));
        if (args.payout_verb == "paid") {
            if (p->status == "paid") return fail("payout " + std::to_string(args.id) + " is already paid");
            if (p->status == "cancelled") return fail("payout " + std::to_string(args.id) + " was cancelled by a reroll");
            storage::set_payout(db, p->id, p->status, "paid", "marked paid by staff: " + args.reason, now);
            std::cout << "payout " << p->id << " marked paid\n";
            return 0;
        }
        if (p->status != "held" && p->status != "check" && p->status != "failed") {
            return fail("payout " + std::to_string(args.id) + " is " + p->status + ": only held, check and failed payouts are retried");
        }
        // The same bill number: WeChat Pay treats it as the same order, so a payment that did go
        // through is reported, not made again.
        storage::set_payout(db, p->id, p->status, "pending", "retry by staff: " + args.reason, now);
        std::cout << "payout " << p->id << " queued again with bill number " << p->billno << "\n";
        return 0;
    });
}

} // namespace qunbot::bot

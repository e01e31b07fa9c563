#include "storage/draw_state.hpp"

#include "storage/outbox.hpp"
#include "storage/rule_state.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/VariadicBind.h>
#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

namespace qunbot::storage {

namespace {

constexpr const char* round_columns =
    "r.id, r.draw_id, r.series, r.tenant, r.app, r.group_id, r.slot, r.status, r.opened_ms, r.closes_at_ms, r.close_entries,"
    " r.seed, r.commitment, r.prizes, r.payout, coalesce(r.drawn_ms, 0), r.closed_by, r.digest,"
    " (SELECT count(*) FROM draw_entries e WHERE e.round_id = r.id)";

DrawRound read_round(SQLite::Statement& st)
{
    DrawRound r;
    r.id = st.getColumn(0).getInt64();
    r.draw_id = st.getColumn(1).getString();
    r.series = st.getColumn(2).getString();
    r.tenant = st.getColumn(3).getString();
    r.app = st.getColumn(4).getString();
    r.group_id = st.getColumn(5).getString();
    r.slot = st.getColumn(6).getString();
    r.status = st.getColumn(7).getString();
    r.opened_ms = st.getColumn(8).getInt64();
    r.closes_at_ms = st.getColumn(9).getInt64();
    r.close_entries = st.getColumn(10).getInt();
    r.seed = st.getColumn(11).getString();
    r.commitment = st.getColumn(12).getString();
    // A round whose stored prizes cannot be read keeps an empty spec: verification says so.
    if (auto p = rules::PrizeSpec::from_json(st.getColumn(13).getString())) r.prizes = std::move(*p);
    r.payout = st.getColumn(14).getString();
    r.drawn_ms = st.getColumn(15).getInt64();
    r.closed_by = st.getColumn(16).getString();
    r.digest = st.getColumn(17).getString();
    r.entries = st.getColumn(18).getInt64();
    return r;
}

rules::GroupInfo group_info(SQLite::Database& db, const std::string& tenant, const std::string& group_id)
{
    rules::GroupInfo g;
    g.id = group_id;
    SQLite::Statement st(db, "SELECT name, owner, (SELECT count(*) FROM group_members m WHERE m.tenant = c.tenant AND m.group_id = c.group_id"
                             " AND m.present = 1) FROM chat_groups c WHERE tenant = ? AND group_id = ?");
    SQLite::bind(st, tenant, group_id);
    if (st.executeStep()) {
        g.name = st.getColumn(0).getString();
        g.owner = st.getColumn(1).getString();
        g.member_count = st.getColumn(2).getInt();
    }
    return g;
}

std::string display_name(SQLite::Database& db, const std::string& tenant, const std::string& member)
{
    SQLite::Statement st(db, "SELECT name FROM people WHERE tenant = ? AND member_id = ?");
    SQLite::bind(st, tenant, member);
    return st.executeStep() ? st.getColumn(0).getString() : std::string();
}

std::string closes_text(const DrawRound& r, int utc_offset_s)
{
    std::string s;
    if (r.closes_at_ms > 0) s = rules::format_time_at(r.closes_at_ms, utc_offset_s, "%m月%d日 %H:%M");
    if (r.close_entries > 0) s += (s.empty() ? "满" : " 或满") + std::to_string(r.close_entries) + "人";
    return s.empty() ? "由工作人员" : s;
}

core::Action group_post(const DrawRound& r, std::string key, std::string text, std::vector<std::string> mentions)
{
    core::Action a;
    a.kind = core::ActionKind::post;
    a.rule_id = "draw:" + r.draw_id;
    a.tenant = r.tenant;
    a.platform = "wecom";
    a.app = r.app;
    a.group_id = r.group_id;
    a.text = std::move(text);
    a.mentions = std::move(mentions);
    a.idempotency_key = r.tenant + "/draw/" + std::to_string(r.id) + "/" + key;
    return a;
}

// Queues a tag for `member` (the assign action and the recorded tag) unless it has it already.
void tag_member(SQLite::Database& db, const DrawRound& r, const std::string& tag, const std::string& member, const std::string& why,
                std::int64_t now_ms)
{
    if (tag.empty()) return;
    SQLite::Statement has(db, "SELECT 1 FROM member_tags WHERE tenant = ? AND member_id = ? AND tag = ?");
    SQLite::bind(has, r.tenant, member, tag);
    if (has.executeStep()) return;
    rules::Decision d;
    core::Action a;
    a.kind = core::ActionKind::assign_tag;
    a.rule_id = "draw:" + r.draw_id;
    a.tenant = r.tenant;
    a.platform = "wecom";
    a.app = r.app;
    a.group_id = r.group_id;
    a.target = member;
    a.text = tag;
    a.idempotency_key = r.tenant + "/draw/" + std::to_string(r.id) + "/tag/" + tag + "/" + member;
    d.actions.push_back(std::move(a));
    d.tags.push_back(rules::TagChange{member, tag, true, "draw:" + r.draw_id, why});
    apply_decision(db, d, r.tenant, 0, now_ms, "");
}

rules::EntrantFacts facts_of(SQLite::Database& db, const DrawRound& r, const std::string& member, std::int64_t now_ms, int utc_offset_s)
{
    rules::EntrantFacts f;
    f.staff = !rules::is_customer_id(member);
    f.blacklisted = is_blacklisted(db, r.tenant, member);
    {
        SQLite::Statement st(db, "SELECT present, joined_at FROM group_members WHERE tenant = ? AND group_id = ? AND member_id = ?");
        SQLite::bind(st, r.tenant, r.group_id, member);
        if (st.executeStep()) {
            f.in_group = st.getColumn(0).getInt() != 0;
            if (!st.getColumn(1).isNull()) f.joined_s = st.getColumn(1).getInt64();
        }
    }
    {
        SQLite::Statement st(db, "SELECT tag FROM member_tags WHERE tenant = ? AND member_id = ?");
        SQLite::bind(st, r.tenant, member);
        while (st.executeStep()) f.tags.push_back(st.getColumn(0).getString());
    }
    {
        const std::int64_t today = (now_ms / 1000 + utc_offset_s) / 86400;
        SQLite::Statement st(db, "SELECT DISTINCT (hour + ?1) / 86400 FROM member_hours WHERE tenant = ?2 AND group_id = ?3"
                                 " AND member_id = ?4 AND hour >= ?5");
        SQLite::bind(st, utc_offset_s, r.tenant, r.group_id, member, static_cast<std::int64_t>((today - 63) * 86400 - utc_offset_s));
        while (st.executeStep()) {
            const auto ago = today - st.getColumn(0).getInt64();
            if (ago >= 0 && ago < 64) f.active_bits |= 1ull << ago;
        }
    }
    {
        SQLite::Statement st(db, "SELECT coalesce(max(at_ms), 0) FROM draw_picks WHERE tenant = ? AND member_id = ? AND series = ?"
                                 " AND replaced = 0");
        SQLite::bind(st, r.tenant, member, r.series);
        if (st.executeStep()) f.last_win_ms = st.getColumn(0).getInt64();
    }
    return f;
}

std::string bill_number(const std::string& instance, std::int64_t round_id, int pick)
{
    // [0-9a-zA-Z], 28 at most: instance (6) + "R" + round (12) + "P" + pick (5) = 25.
    char buf[32];
    std::snprintf(buf, sizeof buf, "R%012lldP%05d", static_cast<long long>(round_id), pick);
    return instance + buf;
}

void add_payout(SQLite::Database& db, const DrawRound& r, int pick, const std::string& member, std::int64_t amount_fen,
                std::int64_t now_ms)
{
    if (amount_fen <= 0) return;
    SQLite::Statement st(db, "INSERT INTO payouts (round_id, pick, tenant, app, member_id, amount_fen, method, billno, status,"
                             " created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING");
    const std::string status = r.payout == "wechat_pay" ? "pending" : "manual";
    SQLite::bind(st, r.id, pick, r.tenant, r.app, member, amount_fen, r.payout, bill_number(instance_id(db), r.id, pick), status, now_ms,
                 now_ms);
    st.exec();
}

std::vector<std::string> sorted_entries(SQLite::Database& db, std::int64_t round_id)
{
    std::vector<std::string> out;
    SQLite::Statement st(db, "SELECT member_id FROM draw_entries WHERE round_id = ?");
    st.bind(1, round_id);
    while (st.executeStep()) out.push_back(st.getColumn(0).getString());
    // Byte order, as the published algorithm says (not SQLite's collation, whatever it is).
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace

std::string instance_id(SQLite::Database& db)
{
    {
        SQLite::Statement st(db, "SELECT value FROM meta WHERE key = 'instance_id'");
        if (st.executeStep()) return st.getColumn(0).getString();
    }
    static constexpr char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    unsigned char b[6];
    if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("the system random generator failed");
    std::string id;
    for (const auto c : b) id += alphabet[c % 32];
    SQLite::Statement ins(db, "INSERT INTO meta (key, value) VALUES ('instance_id', ?) ON CONFLICT DO NOTHING");
    ins.bind(1, id);
    ins.exec();
    SQLite::Statement st(db, "SELECT value FROM meta WHERE key = 'instance_id'");
    st.executeStep();
    return st.getColumn(0).getString();
}

std::optional<std::int64_t> open_round(SQLite::Database& db, const rules::DrawSpec& draw, const std::string& tenant, const std::string& app,
                                       const rules::GroupInfo& group, const std::string& slot, std::int64_t now_ms, int utc_offset_s)
{
    DrawRound r;
    r.draw_id = draw.id;
    r.series = draw.series;
    r.tenant = tenant;
    r.app = app;
    r.group_id = group.id;
    r.slot = slot;
    r.status = "open";
    r.opened_ms = now_ms;
    std::int64_t closes = draw.duration_ms > 0 ? now_ms + draw.duration_ms : 0;
    if (draw.has_closes_at) {
        if (auto s = rules::next_slot(draw.closes_at, now_ms); s && (closes == 0 || s->at_ms < closes)) closes = s->at_ms;
    }
    r.closes_at_ms = closes;
    r.close_entries = draw.close_entries;
    r.seed = rules::new_seed();
    r.commitment = rules::commitment_of(r.seed);
    r.prizes = draw.prizes;
    r.payout = std::string(rules::to_string(draw.payout));
    SQLite::Statement st(db, "INSERT INTO draw_rounds (draw_id, series, tenant, app, group_id, slot, status, opened_ms, closes_at_ms,"
                             " close_entries, seed, commitment, prizes, payout) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING");
    SQLite::bind(st, r.draw_id, r.series, r.tenant, r.app, r.group_id, r.slot, r.status, r.opened_ms, r.closes_at_ms, r.close_entries, r.seed,
                 r.commitment, r.prizes.to_json(), r.payout);
    if (st.exec() == 0) return std::nullopt;
    r.id = db.getLastInsertRowid();
    rules::DrawMessage m;
    m.spec = &draw;
    m.round = r.id;
    m.closes = closes_text(r, utc_offset_s);
    m.commitment = r.commitment;
    std::string text;
    std::vector<std::string> mentions;
    if (!draw.open_text.empty()) {
        text = rules::render_draw(draw.open_text, m, group, now_ms, utc_offset_s, &mentions);
    } else {
        const std::string how = !draw.keywords.empty() ? "回复「" + draw.keywords.front() + "」参与"
                                : draw.enter_by_join ? std::string("新入群即参与")
                                                     : std::string("由工作人员登记参与");
        text = "🎁 抽奖开始:" + how +
               ",奖品 " + draw.prizes.describe() + ",开奖:" + m.closes + "。\n公平承诺:随机种子的 SHA-256 = " + r.commitment +
               "(开奖时公布种子,人人可验证)";
    }
    enqueue_action(db, group_post(r, "open", std::move(text), std::move(mentions)), now_ms);
    return r.id;
}

std::vector<DrawRound> open_rounds(SQLite::Database& db, const std::string& tenant, const std::string& group_id)
{
    std::vector<DrawRound> out;
    SQLite::Statement st(db, std::string("SELECT ") + round_columns +
                                 " FROM draw_rounds r WHERE r.status = 'open' AND r.tenant = ? AND r.group_id = ? ORDER BY r.id");
    SQLite::bind(st, tenant, group_id);
    while (st.executeStep()) out.push_back(read_round(st));
    return out;
}

std::vector<std::int64_t> rounds_due(SQLite::Database& db, std::int64_t now_ms)
{
    std::vector<std::int64_t> out;
    SQLite::Statement st(db, "SELECT id FROM draw_rounds WHERE status = 'open' AND closes_at_ms > 0 AND closes_at_ms <= ? ORDER BY closes_at_ms, id");
    st.bind(1, now_ms);
    while (st.executeStep()) out.push_back(st.getColumn(0).getInt64());
    return out;
}

std::optional<std::int64_t> next_close_ms(SQLite::Database& db)
{
    SQLite::Statement st(db, "SELECT min(closes_at_ms) FROM draw_rounds WHERE status = 'open' AND closes_at_ms > 0");
    if (st.executeStep() && !st.getColumn(0).isNull()) return st.getColumn(0).getInt64();
    return std::nullopt;
}

std::optional<DrawRound> find_round(SQLite::Database& db, std::int64_t id)
{
    SQLite::Statement st(db, std::string("SELECT ") + round_columns + " FROM draw_rounds r WHERE r.id = ?");
    st.bind(1, id);
    if (st.executeStep()) return read_round(st);
    return std::nullopt;
}

std::vector<DrawRound> list_rounds(SQLite::Database& db, const std::string& draw_id, std::size_t limit)
{
    std::vector<DrawRound> out;
    SQLite::Statement st(db, std::string("SELECT ") + round_columns +
                                 " FROM draw_rounds r WHERE ?1 = '' OR r.draw_id = ?1 ORDER BY r.id DESC LIMIT ?2");
    SQLite::bind(st, draw_id, static_cast<std::int64_t>(limit));
    while (st.executeStep()) out.push_back(read_round(st));
    return out;
}

EntryResult enter_round(SQLite::Database& db, const rules::DrawSpec* draw, std::int64_t round_id, const std::string& member,
                        const std::string& via, std::int64_t now_ms, int utc_offset_s)
{
    EntryResult res;
    const auto r = find_round(db, round_id);
    if (!r || r->status != "open") {
        res.reason = r ? "the draw is already drawn" : "no such draw round";
        return res;
    }
    if (r->closes_at_ms > 0 && now_ms >= r->closes_at_ms) {
        res.reason = "the draw closed at its time";
        return res;
    }
    const rules::Eligibility defaults;
    const auto& rules_for = draw ? draw->eligibility : defaults;
    const auto facts = facts_of(db, *r, member, now_ms, utc_offset_s);
    // Staff adding someone by hand vouches for membership and timing, not for the other rules.
    auto eligibility = rules_for;
    if (via == "staff") eligibility.joined_before_open = false;
    auto f = facts;
    // Speaking in the group shows presence (AI-bot and archive groups may have no directory).
    if (via == "staff" || via == "keyword") f.in_group = true;
    if (auto why = rules::ineligible(eligibility, f, r->opened_ms, now_ms, via == "join")) {
        res.status = EntryResult::Status::rejected;
        res.reason = *why;
        SQLite::Statement st(db, "INSERT INTO draw_rejections (round_id, member_id, at_ms, reason) VALUES (?,?,?,?) ON CONFLICT DO NOTHING");
        SQLite::bind(st, round_id, member, now_ms, *why);
        st.exec();
        return res;
    }
    SQLite::Statement st(db, "INSERT INTO draw_entries (round_id, member_id, entered_ms, via) VALUES (?,?,?,?) ON CONFLICT DO NOTHING");
    SQLite::bind(st, round_id, member, now_ms, via);
    if (st.exec() == 0) {
        res.status = EntryResult::Status::already;
        return res;
    }
    res.status = EntryResult::Status::entered;
    if (draw) tag_member(db, *r, draw->entrant_tag, member, "entered draw round " + std::to_string(round_id), now_ms);
    if (r->close_entries > 0 && r->entries + 1 >= r->close_entries) {
        res.drew = draw_round(db, draw, round_id, now_ms, utc_offset_s, "entries").drawn;
    }
    return res;
}

DrawResult draw_round(SQLite::Database& db, const rules::DrawSpec* draw, std::int64_t round_id, std::int64_t now_ms, int utc_offset_s,
                      const std::string& closed_by)
{
    DrawResult res;
    auto r = find_round(db, round_id);
    if (!r || r->status != "open") return res;
    const auto entries = sorted_entries(db, round_id);
    const auto digest = rules::entries_digest(entries);
    {
        SQLite::Statement st(db, "UPDATE draw_rounds SET status = 'drawn', drawn_ms = ?, closed_by = ?, digest = ? WHERE id = ? AND status = 'open'");
        SQLite::bind(st, now_ms, closed_by, digest, round_id);
        if (st.exec() == 0) return res;
    }
    r->status = "drawn";
    r->drawn_ms = now_ms;
    r->digest = digest;
    res.drawn = true;
    res.entries = entries.size();
    const auto winners = rules::winner_count(r->prizes, entries.size());
    const auto order = rules::pick_order(r->seed, digest, entries.size(), winners);
    const auto prizes = rules::awards(r->prizes, winners, r->seed, digest);
    rules::DrawMessage m;
    m.spec = draw;
    m.round = r->id;
    m.closes = closes_text(*r, utc_offset_s);
    m.commitment = r->commitment;
    m.seed = r->seed;
    m.digest = digest;
    m.entries = entries.size();
    SQLite::Statement pick(db, "INSERT INTO draw_picks (round_id, pick, tenant, series, member_id, rank, tier, amount_fen, at_ms)"
                               " VALUES (?,?,?,?,?,?,?,?,?)");
    for (std::size_t k = 0; k < winners; ++k) {
        const auto& member = entries[order[k]];
        SQLite::bind(pick, round_id, static_cast<int>(k), r->tenant, r->series, member, static_cast<int>(k), prizes[k].tier,
                     prizes[k].amount_fen, now_ms);
        pick.exec();
        pick.reset();
        add_payout(db, *r, static_cast<int>(k), member, prizes[k].amount_fen, now_ms);
        res.total_fen += prizes[k].amount_fen;
        m.winners.push_back({member, display_name(db, r->tenant, member), prizes[k].tier, prizes[k].amount_fen});
        if (draw) tag_member(db, *r, draw->winner_tag, member, "won draw round " + std::to_string(round_id), now_ms);
    }
    res.winners = winners;
    const auto group = group_info(db, r->tenant, r->group_id);
    std::string text;
    std::vector<std::string> mentions;
    if (winners == 0) {
        text = "本轮抽奖无人参与,未产生中奖者。随机种子:" + r->seed;
    } else if (draw && !draw->result_text.empty()) {
        text = rules::render_draw(draw->result_text, m, group, now_ms, utc_offset_s, &mentions);
    } else {
        rules::Template t;
        std::vector<rules::TemplateError> errors;
        t = rules::Template::compile("🎉 开奖啦!共 {{ draw.entries }} 人参与,中奖名单:\n{{ draw.winners }}\n"
                                     "随机种子:{{ draw.seed }}(sha256(种子) 即开场公布的承诺值,可自行验证)",
                                     rules::Trigger::draw, errors);
        text = rules::render_draw(t, m, group, now_ms, utc_offset_s, &mentions);
    }
    enqueue_action(db, group_post(*r, "result", std::move(text), std::move(mentions)), now_ms);
    return res;
}

RerollResult reroll(SQLite::Database& db, const rules::DrawSpec* draw, std::int64_t round_id, const std::string& member,
                    const std::string& reason, std::int64_t now_ms, int utc_offset_s)
{
    RerollResult res;
    const auto r = find_round(db, round_id);
    if (!r) {
        res.message = "no draw round " + std::to_string(round_id);
        return res;
    }
    if (r->status != "drawn") {
        res.message = "round " + std::to_string(round_id) + " is not drawn yet";
        return res;
    }
    SQLite::Statement find(db, "SELECT pick, rank, tier, amount_fen FROM draw_picks WHERE round_id = ? AND member_id = ? AND replaced = 0");
    SQLite::bind(find, round_id, member);
    if (!find.executeStep()) {
        res.message = member + " is not a current winner of round " + std::to_string(round_id);
        return res;
    }
    const int old_pick = find.getColumn(0).getInt();
    const int rank = find.getColumn(1).getInt();
    const auto tier = find.getColumn(2).getString();
    const auto amount = find.getColumn(3).getInt64();
    find.reset();
    {
        // Money that may already have moved is not taken back by a reroll.
        SQLite::Statement pay(db, "SELECT status FROM payouts WHERE round_id = ? AND pick = ?");
        SQLite::bind(pay, round_id, old_pick);
        if (pay.executeStep()) {
            const auto status = pay.getColumn(0).getString();
            if (status == "in_flight" || status == "paid" || status == "check") {
                res.message = member + "'s payout is " + status + ": a paid (or possibly paid) winner cannot be rerolled";
                return res;
            }
        }
        SQLite::Statement cancel(db, "UPDATE payouts SET status = 'cancelled', detail = ?, updated_ms = ? WHERE round_id = ? AND pick = ?");
        SQLite::bind(cancel, "rerolled: " + reason, now_ms, round_id, old_pick);
        cancel.exec();
    }
    SQLite::Statement mark(db, "UPDATE draw_picks SET replaced = 1, reason = ? WHERE round_id = ? AND pick = ?");
    SQLite::bind(mark, reason, round_id, old_pick);
    mark.exec();
    SQLite::Statement count(db, "SELECT count(*) FROM draw_picks WHERE round_id = ?");
    count.bind(1, round_id);
    count.executeStep();
    const auto next = static_cast<std::size_t>(count.getColumn(0).getInt64());
    const auto entries = sorted_entries(db, round_id);
    if (next >= entries.size()) {
        res.ok = true;
        res.message = member + " removed; every entrant has been picked, nobody is left to take the place";
        return res;
    }
    const auto order = rules::pick_order(r->seed, r->digest, entries.size(), next + 1);
    const auto& winner = entries[order[next]];
    SQLite::Statement pick(db, "INSERT INTO draw_picks (round_id, pick, tenant, series, member_id, rank, tier, amount_fen, at_ms)"
                               " VALUES (?,?,?,?,?,?,?,?,?)");
    SQLite::bind(pick, round_id, static_cast<int>(next), r->tenant, r->series, winner, rank, tier, amount, now_ms);
    pick.exec();
    add_payout(db, *r, static_cast<int>(next), winner, amount, now_ms);
    if (draw) tag_member(db, *r, draw->winner_tag, winner, "won draw round " + std::to_string(round_id) + " by reroll", now_ms);
    const auto name = display_name(db, r->tenant, winner);
    const auto text = "补抽:原中奖者因「" + reason + "」无法领奖,由 @" + (name.empty() ? winner : name) + " 获得" + (tier.empty() ? "" : " " + tier) +
                      " " + rules::format_fen(amount) + "(同一随机序列的下一位,可验证)";
    enqueue_action(db, group_post(*r, "reroll/" + std::to_string(next), text, {winner}), now_ms);
    (void)utc_offset_s;
    res.ok = true;
    res.replacement = winner;
    res.message = member + " replaced by " + winner + " (pick " + std::to_string(next) + ")";
    return res;
}

std::vector<EntryRow> round_entries(SQLite::Database& db, std::int64_t round_id)
{
    std::vector<EntryRow> out;
    SQLite::Statement st(db, "SELECT member_id, entered_ms, via FROM draw_entries WHERE round_id = ? ORDER BY entered_ms, member_id");
    st.bind(1, round_id);
    while (st.executeStep()) out.push_back({st.getColumn(0).getString(), st.getColumn(1).getInt64(), st.getColumn(2).getString()});
    return out;
}

std::vector<std::pair<std::string, std::string>> round_rejections(SQLite::Database& db, std::int64_t round_id)
{
    std::vector<std::pair<std::string, std::string>> out;
    SQLite::Statement st(db, "SELECT member_id, reason FROM draw_rejections WHERE round_id = ? ORDER BY at_ms, member_id");
    st.bind(1, round_id);
    while (st.executeStep()) out.emplace_back(st.getColumn(0).getString(), st.getColumn(1).getString());
    return out;
}

std::vector<rules::Pick> round_picks(SQLite::Database& db, std::int64_t round_id, std::vector<std::string>* tiers)
{
    std::vector<rules::Pick> out;
    SQLite::Statement st(db, "SELECT pick, member_id, rank, amount_fen, replaced, tier FROM draw_picks WHERE round_id = ? ORDER BY pick");
    st.bind(1, round_id);
    while (st.executeStep()) {
        rules::Pick p;
        p.index = static_cast<std::size_t>(st.getColumn(0).getInt64());
        p.member = st.getColumn(1).getString();
        p.rank = st.getColumn(2).getInt();
        p.amount_fen = st.getColumn(3).getInt64();
        p.replaced = st.getColumn(4).getInt() != 0;
        if (tiers) tiers->push_back(st.getColumn(5).getString());
        out.push_back(std::move(p));
    }
    return out;
}

std::vector<std::string> verify_round(SQLite::Database& db, std::int64_t round_id)
{
    const auto r = find_round(db, round_id);
    if (!r) return {"no draw round " + std::to_string(round_id)};
    if (r->status != "drawn") return {"round " + std::to_string(round_id) + " is not drawn yet: there is nothing to verify"};
    const auto stored = rules::PrizeSpec::from_json([&] {
        SQLite::Statement st(db, "SELECT prizes FROM draw_rounds WHERE id = ?");
        st.bind(1, round_id);
        st.executeStep();
        return st.getColumn(0).getString();
    }());
    if (!stored) return {"the stored prize definition cannot be read"};
    return rules::verify_draw(r->seed, r->commitment, sorted_entries(db, round_id), r->digest, *stored, round_picks(db, round_id));
}

// ---- payouts --------------------------------------------------------------------------------

namespace {

constexpr const char* payout_columns =
    "id, round_id, pick, tenant, app, member_id, amount_fen, method, billno, status, openid, attempts, next_try_ms, detail,"
    " send_listid, created_ms, updated_ms";

Payout read_payout(SQLite::Statement& st)
{
    Payout p;
    p.id = st.getColumn(0).getInt64();
    p.round_id = st.getColumn(1).getInt64();
    p.pick = st.getColumn(2).getInt();
    p.tenant = st.getColumn(3).getString();
    p.app = st.getColumn(4).getString();
    p.member = st.getColumn(5).getString();
    p.amount_fen = st.getColumn(6).getInt64();
    p.method = st.getColumn(7).getString();
    p.billno = st.getColumn(8).getString();
    p.status = st.getColumn(9).getString();
    p.openid = st.getColumn(10).getString();
    p.attempts = st.getColumn(11).getInt();
    p.next_try_ms = st.getColumn(12).getInt64();
    p.detail = st.getColumn(13).getString();
    p.send_listid = st.getColumn(14).getString();
    p.created_ms = st.getColumn(15).getInt64();
    p.updated_ms = st.getColumn(16).getInt64();
    return p;
}

std::vector<Payout> payouts_where(SQLite::Database& db, const std::string& where, std::int64_t a, std::int64_t b)
{
    std::vector<Payout> out;
    SQLite::Statement st(db, std::string("SELECT ") + payout_columns + " FROM payouts WHERE " + where);
    if (st.getBindParameterCount() >= 1) st.bind(1, a);
    if (st.getBindParameterCount() >= 2) st.bind(2, b);
    while (st.executeStep()) out.push_back(read_payout(st));
    return out;
}

} // namespace

std::vector<Payout> due_payouts(SQLite::Database& db, std::int64_t now_ms, std::size_t limit)
{
    return payouts_where(db, "method = 'wechat_pay' AND status IN ('pending', 'failed') AND next_try_ms <= ?1 ORDER BY id LIMIT ?2", now_ms,
                         static_cast<std::int64_t>(limit));
}

std::vector<Payout> in_flight_payouts(SQLite::Database& db)
{
    return payouts_where(db, "method = 'wechat_pay' AND status = 'in_flight' ORDER BY id", 0, 0);
}

std::optional<std::int64_t> next_payout_ms(SQLite::Database& db)
{
    SQLite::Statement st(db, "SELECT min(next_try_ms) FROM payouts WHERE method = 'wechat_pay' AND status IN ('pending', 'failed')");
    if (st.executeStep() && !st.getColumn(0).isNull()) return st.getColumn(0).getInt64();
    return std::nullopt;
}

std::vector<Payout> round_payouts(SQLite::Database& db, std::int64_t round_id)
{
    return payouts_where(db, "round_id = ?1 ORDER BY pick", round_id, 0);
}

std::optional<Payout> find_payout(SQLite::Database& db, std::int64_t id)
{
    auto v = payouts_where(db, "id = ?1", id, 0);
    if (v.empty()) return std::nullopt;
    return v.front();
}

bool set_payout(SQLite::Database& db, std::int64_t id, const std::string& from, const std::string& status, const std::string& detail,
                std::int64_t now_ms, bool attempt, std::int64_t next_try_ms, const std::string& openid, const std::string& send_listid)
{
    SQLite::Statement st(db, "UPDATE payouts SET status = ?1, detail = ?2, updated_ms = ?3, attempts = attempts + ?4, next_try_ms = ?5,"
                             " openid = CASE WHEN ?6 <> '' THEN ?6 ELSE openid END,"
                             " send_listid = CASE WHEN ?7 <> '' THEN ?7 ELSE send_listid END,"
                             " paid_ms = CASE WHEN ?1 = 'paid' THEN ?3 ELSE paid_ms END"
                             " WHERE id = ?8 AND (?9 = '' OR status = ?9)");
    SQLite::bind(st, status, detail, now_ms, attempt ? 1 : 0, next_try_ms, openid, send_listid, id, from);
    return st.exec() > 0;
}

PaidToday paid_on_day(SQLite::Database& db, const std::string& tenant, const std::string& member, std::int64_t day, int utc_offset_s)
{
    PaidToday out;
    const std::int64_t from = (day * 86400 - utc_offset_s) * 1000;
    const std::int64_t to = from + 86'400'000;
    // A payout counts for the day it was (or is being) sent: updated_ms of the first attempt is
    // close enough, and in_flight/check rows count as spent until a person says otherwise.
    SQLite::Statement st(db, "SELECT coalesce(sum(CASE WHEN member_id = ?2 THEN amount_fen END), 0),"
                             " count(CASE WHEN member_id = ?2 THEN 1 END), coalesce(sum(amount_fen), 0) FROM payouts"
                             " WHERE tenant = ?1 AND method = 'wechat_pay' AND status IN ('in_flight', 'paid', 'check')"
                             " AND coalesce(paid_ms, updated_ms) >= ?3 AND coalesce(paid_ms, updated_ms) < ?4");
    SQLite::bind(st, tenant, member, from, to);
    if (st.executeStep()) {
        out.member_fen = st.getColumn(0).getInt64();
        out.member_count = st.getColumn(1).getInt();
        out.total_fen = st.getColumn(2).getInt64();
    }
    return out;
}

std::int64_t round_committed_fen(SQLite::Database& db, std::int64_t round_id)
{
    SQLite::Statement st(db, "SELECT coalesce(sum(amount_fen), 0) FROM payouts WHERE round_id = ? AND status IN ('in_flight', 'paid', 'check')");
    st.bind(1, round_id);
    st.executeStep();
    return st.getColumn(0).getInt64();
}

std::string payouts_csv(SQLite::Database& db, std::int64_t round_id)
{
    auto quote = [](const std::string& s) {
        // Cells starting with = + - @ are formulas to a spreadsheet: a leading ' keeps them text.
        std::string v = (!s.empty() && std::string_view("=+-@").find(s.front()) != std::string_view::npos) ? "'" + s : s;
        if (v.find_first_of(",\"\n\r") == std::string::npos) return v;
        std::string q = "\"";
        for (const char c : v) {
            if (c == '"') q += '"';
            q += c;
        }
        return q + "\"";
    };
    const auto r = find_round(db, round_id);
    std::string out = "round,draw,group,pick,rank,tier,member,name,amount_fen,amount_yuan,method,status,billno,detail\n";
    if (!r) return out;
    std::vector<std::string> tiers;
    const auto picks = round_picks(db, round_id, &tiers);
    for (const auto& p : round_payouts(db, round_id)) {
        int rank = 0;
        std::string tier;
        for (std::size_t i = 0; i < picks.size(); ++i) {
            if (static_cast<int>(picks[i].index) == p.pick) {
                rank = picks[i].rank;
                tier = tiers[i];
            }
        }
        const auto yuan = std::to_string(p.amount_fen / 100) + "." + (p.amount_fen % 100 < 10 ? "0" : "") + std::to_string(p.amount_fen % 100);
        out += std::to_string(r->id) + "," + quote(r->draw_id) + "," + quote(r->group_id) + "," + std::to_string(p.pick) + "," +
               std::to_string(rank + 1) + "," + quote(tier) + "," + quote(p.member) + "," + quote(display_name(db, p.tenant, p.member)) + "," +
               std::to_string(p.amount_fen) + "," + yuan + "," + p.method + "," + p.status + "," + p.billno + "," + quote(p.detail) + "\n";
    }
    return out;
}

// ---- blacklist ------------------------------------------------------------------------------

bool blacklist_add(SQLite::Database& db, const std::string& tenant, const std::string& member, const std::string& reason, std::int64_t now_ms,
                   const std::string& by)
{
    SQLite::Statement st(db, "INSERT INTO blacklist (tenant, member_id, reason, since_ms, added_by) VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING");
    SQLite::bind(st, tenant, member, reason, now_ms, by);
    if (st.exec() == 0) return false;
    SQLite::Statement h(db, "INSERT INTO blacklist_history (at_ms, tenant, member_id, added, by_whom, reason) VALUES (?,?,?,1,?,?)");
    SQLite::bind(h, now_ms, tenant, member, by, reason);
    h.exec();
    return true;
}

bool blacklist_remove(SQLite::Database& db, const std::string& tenant, const std::string& member, const std::string& by,
                      const std::string& reason, std::int64_t now_ms)
{
    SQLite::Statement st(db, "DELETE FROM blacklist WHERE tenant = ? AND member_id = ?");
    SQLite::bind(st, tenant, member);
    if (st.exec() == 0) return false;
    SQLite::Statement h(db, "INSERT INTO blacklist_history (at_ms, tenant, member_id, added, by_whom, reason) VALUES (?,?,?,0,?,?)");
    SQLite::bind(h, now_ms, tenant, member, by, reason);
    h.exec();
    return true;
}

std::vector<BlacklistChange> blacklist_history(SQLite::Database& db, const std::string& tenant, std::size_t limit)
{
    std::vector<BlacklistChange> out;
    SQLite::Statement st(db, "SELECT at_ms, member_id, added, by_whom, reason FROM blacklist_history WHERE tenant = ? ORDER BY id DESC LIMIT ?");
    SQLite::bind(st, tenant, static_cast<std::int64_t>(limit));
    while (st.executeStep()) {
        out.push_back({st.getColumn(0).getInt64(), st.getColumn(1).getString(), st.getColumn(2).getInt() != 0, st.getColumn(3).getString(),
                       st.getColumn(4).getString()});
    }
    return out;
}

bool is_blacklisted(SQLite::Database& db, const std::string& tenant, const std::string& member)
{
    SQLite::Statement st(db, "SELECT 1 FROM blacklist WHERE tenant = ? AND member_id = ?");
    SQLite::bind(st, tenant, member);
    return st.executeStep();
}

std::vector<std::pair<std::string, std::string>> blacklist_list(SQLite::Database& db, const std::string& tenant)
{
    std::vector<std::pair<std::string, std::string>> out;
    SQLite::Statement st(db, "SELECT member_id, reason || ' (by ' || added_by || ')' FROM blacklist WHERE tenant = ? ORDER BY since_ms");
    st.bind(1, tenant);
    while (st.executeStep()) out.emplace_back(st.getColumn(0).getString(), st.getColumn(1).getString());
    return out;
}

// ---- moderation audit log -------------------------------------------------------------------

namespace {

std::vector<ModerationRow> moderation_rows(SQLite::Statement& st)
{
    std::vector<ModerationRow> out;
    while (st.executeStep()) {
        ModerationRow r;
        r.id = st.getColumn(0).getInt64();
        r.at_ms = st.getColumn(1).getInt64();
        r.tenant = st.getColumn(2).getString();
        r.group_id = st.getColumn(3).getString();
        r.member = st.getColumn(4).getString();
        r.message_id = st.getColumn(5).getString();
        r.excerpt = st.getColumn(6).getString();
        r.rule_id = st.getColumn(7).getString();
        r.hits = st.getColumn(8).getString();
        r.offence = st.getColumn(9).getInt();
        r.steps = st.getColumn(10).getString();
        r.dry_run = st.getColumn(11).getInt() != 0;
        r.undone_ms = st.getColumn(12).isNull() ? 0 : st.getColumn(12).getInt64();
        r.undone_by = st.getColumn(13).getString();
        r.undo_reason = st.getColumn(14).getString();
        r.action_keys = st.getColumn(15).getString();
        out.push_back(std::move(r));
    }
    return out;
}

constexpr const char* moderation_columns = "id, at_ms, tenant, group_id, member_id, message_id, excerpt, rule_id, hits, offence, steps, dry_run,"
                                           " undone_ms, undone_by, undo_reason, action_keys";

} // namespace

std::vector<ModerationRow> moderation_log(SQLite::Database& db, const std::string& member, std::size_t limit)
{
    SQLite::Statement st(db, std::string("SELECT ") + moderation_columns +
                                 " FROM moderation_log WHERE ?1 = '' OR member_id = ?1 ORDER BY id DESC LIMIT ?2");
    SQLite::bind(st, member, static_cast<std::int64_t>(limit));
    auto rows = moderation_rows(st);
    // The keys share a prefix ending in '/': a range on the outbox's unique key index finds them.
    SQLite::Statement actions(db, "SELECT kind, status, CASE WHEN status = 'done' THEN result ELSE last_error END FROM outbox"
                                  " WHERE idempotency_key >= ?1 AND idempotency_key < ?2 ORDER BY id");
    for (auto& r : rows) {
        const std::string& prefix = r.action_keys;
        if (prefix.empty()) continue;
        actions.reset();
        actions.bind(1, prefix);
        actions.bind(2, prefix.substr(0, prefix.size() - 1) + static_cast<char>(prefix.back() + 1));
        while (actions.executeStep()) {
            r.outcomes.push_back({actions.getColumn(0).getString(), actions.getColumn(1).getString(), actions.getColumn(2).getString()});
        }
    }
    return rows;
}

std::optional<ModerationRow> undo_moderation(SQLite::Database& db, std::int64_t id, const std::string& by, const std::string& reason,
                                             std::int64_t now_ms)
{
    SQLite::Statement get(db, std::string("SELECT ") + moderation_columns + " FROM moderation_log WHERE id = ? AND undone_ms IS NULL");
    get.bind(1, id);
    auto rows = moderation_rows(get);
    if (rows.empty()) return std::nullopt;
    SQLite::Statement st(db, "UPDATE moderation_log SET undone_ms = ?, undone_by = ?, undo_reason = ? WHERE id = ?");
    SQLite::bind(st, now_ms, by, reason, id);
    st.exec();
    auto& r = rows.front();
    if (!r.dry_run && r.steps.find("blacklist") != std::string::npos) {
        blacklist_remove(db, r.tenant, r.member, by, "undo of moderation entry " + std::to_string(id) + ": " + reason, now_ms);
    }
    r.undone_ms = now_ms;
    r.undone_by = by;
    r.undo_reason = reason;
    return r;
}

} // namespace qunbot::storage

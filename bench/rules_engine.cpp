// The rule engine on a large rule set: 1,000 message rules holding 10,000 keywords (10 each),
// evaluated against realistic group chatter, on one thread. Only the pure evaluation is timed;
// state loading and the decision commit are storage work measured elsewhere.
#include "rules/detect.hpp"
#include "rules/engine.hpp"
#include "rules/loader.hpp"
#include "rules/text.hpp"

#include <benchmark/benchmark.h>

#include <map>
#include <random>
#include <set>

namespace {

using namespace qunbot;

// Common characters of shop-group chatter; keywords and messages are drawn from the same pool,
// so keywords really do occur (and partially occur) in messages.
const std::vector<std::string>& pool()
{
    static const std::vector<std::string> chars = [] {
        const std::string text =
            "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感"
            "价格优惠活动门店福利群领券下单包邮秒杀团购新品试吃会员积分兑换预约到店自提配送退款售后客服咨询加微信扫码关注";
        std::vector<std::string> out;
        for (std::size_t i = 0; i < text.size();) {
            const auto b = static_cast<unsigned char>(text[i]);
            const std::size_t n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
            out.push_back(text.substr(i, n));
            i += n;
        }
        return out;
    }();
    return chars;
}

// A wide vocabulary: the first `n` characters of the CJK block, as a stand-in for the few
// thousand characters real chatter uses.
const std::vector<std::string>& wide_pool(std::size_t n)
{
    static std::vector<std::string> chars;
    if (chars.size() != n) {
        chars.clear();
        for (std::uint32_t cp = 0x4E00; cp < 0x4E00 + n; ++cp) {
            std::string c;
            c += static_cast<char>(0xE0 | (cp >> 12));
            c += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            c += static_cast<char>(0x80 | (cp & 0x3F));
            chars.push_back(c);
        }
    }
    return chars;
}

std::string random_text(std::mt19937& rng, int min_chars, int max_chars, const std::vector<std::string>& chars = pool())
{
    std::uniform_int_distribution<int> len(min_chars, max_chars);
    std::uniform_int_distribution<std::size_t> pick(0, chars.size() - 1);
    std::string s;
    for (int i = len(rng); i > 0; --i) s += chars[pick(rng)];
    return s;
}

// 10,000 distinct keywords of 3–5 characters from `chars`, shuffled.
std::vector<std::string> bench_keywords(std::mt19937& rng, const std::vector<std::string>& chars)
{
    std::set<std::string> keywords;
    while (keywords.size() < 10'000) keywords.insert(random_text(rng, 3, 5, chars));
    std::vector<std::string> kw(keywords.begin(), keywords.end());
    std::shuffle(kw.begin(), kw.end(), rng);
    return kw;
}

struct Workload {
    std::shared_ptr<const rules::RuleSet> rules;
    std::vector<core::Event> messages;
    rules::State state;
};

// alphabet 0: the 200-character shop-chatter pool (dense: nearly every character starts some
// keyword); otherwise that many distinct characters.
const Workload& workload(std::size_t alphabet = 0)
{
    static std::map<std::size_t, Workload> cache;
    if (auto it = cache.find(alphabet); it != cache.end()) return it->second;
    const auto& chars = alphabet ? wide_pool(alphabet) : pool();
    const Workload w = [&] {
        std::mt19937 rng(42);
        const auto kw = bench_keywords(rng, chars);
        std::string yaml = "version: 1\nrules:\n";
        for (int r = 0; r < 1000; ++r) {
            yaml += "  - id: r" + std::to_string(r) + "\n    on: message\n    when: { contains: [";
            for (int k = 0; k < 10; ++k) yaml += (k ? ", " : "") + kw[static_cast<std::size_t>(r * 10 + k)];
            yaml += "] }\n    unless: { sender: staff }\n    cooldown: { member: 10m }\n    do: [ { reply: \"{{ member.mention }} 回复" +
                    std::to_string(r) + "\" } ]\n";
        }
        auto loaded = rules::load_rule_sources({{"bench.yaml", yaml}});
        if (!loaded.ok()) throw std::runtime_error("bench rule set does not load:\n" + loaded.report());
        Workload out;
        out.rules = loaded.rules;
        // 1,000 messages of 8–40 characters; one in ten carries a keyword (plus chance hits).
        std::uniform_int_distribution<std::size_t> pick_kw(0, kw.size() - 1);
        for (int i = 0; i < 1000; ++i) {
            core::Event e;
            e.kind = core::EventKind::message;
            e.tenant = "corp";
            e.dedup_key = "m" + std::to_string(i);
            e.group_id = "wrGroup";
            e.actor = "wmCUSTOMER000000000000000000" + std::to_string(1000 + i);
            e.message_type = "text";
            e.text = random_text(rng, 8, 40, chars);
            if (i % 10 == 0) e.text += kw[pick_kw(rng)];
            out.messages.push_back(std::move(e));
        }
        out.state.now_ms = 1'767'578'400'000;
        out.state.group = {"wrGroup", "徐汇门店福利群", "owner", 200, {}};
        return out;
    }();
    return cache.emplace(alphabet, std::move(w)).first->second;
}

void rules_message_evaluation(benchmark::State& state)
{
    const auto& w = workload(static_cast<std::size_t>(state.range(0)));
    std::size_t i = 0, actions = 0;
    for (auto _ : state) {
        auto d = rules::evaluate(*w.rules, w.messages[i], w.state);
        actions += d.actions.size();
        benchmark::DoNotOptimize(d);
        if (++i == w.messages.size()) i = 0;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["rules"] = static_cast<double>(w.rules->rules.size());
    state.counters["keywords"] = static_cast<double>(w.rules->keyword_count);
    state.counters["actions_per_msg"] = static_cast<double>(actions) / static_cast<double>(state.iterations());
}
BENCHMARK(rules_message_evaluation)->ArgName("alphabet")->Arg(0)->Arg(3000);

void rules_normalize(benchmark::State& state)
{
    const auto& w = workload();
    std::string out;
    std::size_t i = 0;
    for (auto _ : state) {
        out.clear();
        rules::normalize_into(w.messages[i].text, rules::Fold::keyword, out);
        benchmark::DoNotOptimize(out);
        if (++i == w.messages.size()) i = 0;
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(rules_normalize);

void rules_keyword_scan(benchmark::State& state)
{
    // The keyword search alone, over already-normalised text.
    const auto& w = workload();
    std::vector<std::string> texts;
    for (const auto& m : w.messages) texts.push_back(rules::normalize(m.text, rules::Fold::keyword));
    std::size_t i = 0, hits = 0;
    for (auto _ : state) {
        w.rules->keywords.scan(texts[i], [&](std::uint32_t) { ++hits; });
        if (++i == texts.size()) i = 0;
    }
    benchmark::DoNotOptimize(hits);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(rules_keyword_scan);

void rules_load_and_compile(benchmark::State& state)
{
    // The cost of a reload of this set (parse, check, build the keyword index).
    std::mt19937 rng(7);
    std::string yaml = "version: 1\nrules:\n";
    for (int r = 0; r < 1000; ++r) {
        yaml += "  - id: r" + std::to_string(r) + "\n    on: message\n    when: { contains: [";
        for (int k = 0; k < 10; ++k) yaml += (k ? ", " : "") + random_text(rng, 3, 5);
        yaml += "] }\n    do: [ { reply: ok } ]\n";
    }
    for (auto _ : state) {
        auto r = rules::load_rule_sources({{"bench.yaml", yaml}});
        benchmark::DoNotOptimize(r);
    }
}
BENCHMARK(rules_load_and_compile)->Unit(benchmark::kMillisecond);

} // namespace

namespace {

// Moderation: one rule set with 1,000 keyword rules (10,000 keywords over a 3,000-character
// vocabulary), 50 regex rules and the two detectors of the default ad rules (links with an
// allow-list, contact bait), evaluated on plain-text group chatter.
const Workload& moderation_workload()
{
    static const Workload w = [] {
        const auto& chars = wide_pool(3000);
        std::mt19937 rng(42);
        const auto kw = bench_keywords(rng, chars);
        std::string yaml = "version: 1\nrules:\n";
        for (int r = 0; r < 1000; ++r) {
            yaml += "  - id: k" + std::to_string(r) + "\n    on: message\n    when: { contains: [";
            for (int k = 0; k < 10; ++k) yaml += (k ? ", " : "") + kw[static_cast<std::size_t>(r * 10 + k)];
            yaml += "] }\n    unless: { sender: staff }\n    do: [ { assign_tag: 广告嫌疑 } ]\n";
        }
        for (int r = 0; r < 50; ++r) {
            // Patterns of the kind staff write: a word, a short gap, a run of digits.
            yaml += "  - id: p" + std::to_string(r) + "\n    on: message\n    when: { regex: \"" + random_text(rng, 2, 2, chars) +
                    ".{0,4}[0-9]{" + std::to_string(3 + r % 5) + "}\" }\n    do: [ { assign_tag: 可疑 } ]\n";
        }
        yaml += "  - id: ads-link\n    on: message\n    when: { links: { allow: [taobao.com, jd.com] } }\n    do: [ { assign_tag: 广告嫌疑 } ]\n"
                "  - id: ads-contact\n    on: message\n    when: { contact_bait: [wechat, qq, phone] }\n    do: [ { assign_tag: 广告嫌疑 } ]\n";
        auto loaded = rules::load_rule_sources({{"moderation.yaml", yaml}});
        if (!loaded.ok()) throw std::runtime_error("moderation bench rules do not load:\n" + loaded.report());
        Workload out;
        out.rules = loaded.rules;
        out.messages = workload(3000).messages;
        out.state = workload(3000).state;
        return out;
    }();
    return w;
}

// The same messages as group chatter looks: clauses split by ，and 。, some with ！, an emoji,
// a price, an order number or a few Latin letters. These take normalisation's slow path and
// run the link and contact detectors.
std::vector<core::Event> punctuated(const std::vector<core::Event>& plain)
{
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> pct(0, 99);
    const char* extras[] = {" 39.9元", " 订单号4200001234567", " ok", " 2箱", " V5", " 13点"};
    std::vector<core::Event> out = plain;
    for (auto& e : out) {
        std::string t;
        int chars = 0;
        for (std::size_t i = 0; i < e.text.size();) {
            const auto b = static_cast<unsigned char>(e.text[i]);
            const std::size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
            t += e.text.substr(i, n);
            i += n;
            if (++chars % 7 == 0 && i < e.text.size()) t += pct(rng) < 70 ? "，" : "。";
        }
        if (pct(rng) < 25) t += "！";
        if (pct(rng) < 10) t += "\U0001F60A";
        if (pct(rng) < 30) t += extras[pct(rng) % 6];
        e.text = std::move(t);
    }
    return out;
}

void moderation_message_evaluation(benchmark::State& state)
{
    const auto& m = moderation_workload();
    static const auto chatter = punctuated(m.messages);
    const auto& messages = state.range(0) ? chatter : m.messages;
    std::size_t i = 0;
    for (auto _ : state) {
        auto d = rules::evaluate(*m.rules, messages[i], m.state);
        benchmark::DoNotOptimize(d);
        if (++i == messages.size()) i = 0;
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["keywords"] = static_cast<double>(m.rules->keyword_count);
    state.counters["patterns"] = 50;
}
BENCHMARK(moderation_message_evaluation)->ArgName("punctuated")->Arg(0)->Arg(1);

// The detectors on messages that do hold Latin letters or digits (prices, order numbers, ids):
// the work the plain-Chinese prefilter cannot skip.
void moderation_detectors_latin(benchmark::State& state)
{
    std::vector<std::string> texts;
    std::mt19937 rng(9);
    for (int i = 0; i < 1000; ++i) {
        auto t = random_text(rng, 8, 30, wide_pool(3000));
        t += i % 3 == 0 ? " 39.9元" : i % 3 == 1 ? " 订单号4200001234567890" : " abc123";
        texts.push_back(std::move(t));
    }
    std::size_t i = 0, hits = 0;
    for (auto _ : state) {
        hits += rules::find_domains(texts[i]).size();
        hits += rules::find_contact_bait(texts[i]).any() ? 1 : 0;
        if (++i == texts.size()) i = 0;
    }
    benchmark::DoNotOptimize(hits);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(moderation_detectors_latin);

} // namespace

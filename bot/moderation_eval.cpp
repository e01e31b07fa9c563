#include "bot/moderation_eval.hpp"

#include "rules/engine.hpp"
#include "rules/text.hpp"

#include <sstream>

namespace qunbot::bot {

double EvalResult::precision() const noexcept
{
    const auto flagged = true_positives + false_positives;
    return flagged == 0 ? 1.0 : static_cast<double>(true_positives) / static_cast<double>(flagged);
}

double EvalResult::recall() const noexcept
{
    const auto ads = true_positives + false_negatives;
    return ads == 0 ? 1.0 : static_cast<double>(true_positives) / static_cast<double>(ads);
}

double EvalResult::f1() const noexcept
{
    const auto p = precision();
    const auto r = recall();
    return p + r == 0 ? 0.0 : 2 * p * r / (p + r);
}

EvalResult evaluate_labelled(const rules::RuleSet& set, const std::string& labelled, const std::vector<std::string>& rule_globs)
{
    EvalResult out;
    rules::State state;
    state.now_ms = 1'790'000'000'000;
    state.group.id = "wrEVALGROUP";
    state.group.name = "评测群";
    const std::string member = "wmEVALCUSTOMER0000000000000001";
    std::istringstream in(labelled);
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line.starts_with("#")) continue;
        const auto tab = line.find('\t');
        const auto label = tab == std::string::npos ? std::string() : line.substr(0, tab);
        if (label != "ad" && label != "ok") {
            out.problems.push_back("line " + std::to_string(n) + ": expected \"ad<TAB>text\" or \"ok<TAB>text\"");
            continue;
        }
        const auto text = line.substr(tab + 1);
        core::Event e;
        e.kind = core::EventKind::message;
        e.platform = "wecom";
        e.tenant = "wweval";
        e.group_id = state.group.id;
        e.actor = member;
        e.message_type = "text";
        e.text = text;
        e.dedup_key = "eval:" + std::to_string(n);
        rules::EvaluateOptions opts;
        opts.explain = true; // every rule is traced, so a rule after a `stop` still counts
        const auto d = rules::evaluate(set, e, state, opts);
        bool flagged = false;
        for (const auto& t : d.trace) {
            if (t.outcome != rules::Trace::Outcome::fired && t.outcome != rules::Trace::Outcome::no_effect) continue;
            for (const auto& g : rule_globs) flagged = flagged || rules::glob_match(g, t.rule_id);
        }
        if (label == "ad") {
            if (flagged) ++out.true_positives;
            else {
                ++out.false_negatives;
                out.false_negative_texts.push_back(text);
            }
        } else if (flagged) {
            ++out.false_positives;
            out.false_positive_texts.push_back(text);
        } else {
            ++out.true_negatives;
        }
    }
    return out;
}

} // namespace qunbot::bot

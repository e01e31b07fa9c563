#include "rules/schedule.hpp"

#include <date/tz.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

namespace qunbot::rules {

namespace {

using namespace std::chrono;

std::string lower(std::string_view s)
{
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::vector<std::string> split(std::string_view s, char sep)
{
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == sep) {
            out.emplace_back(s.substr(start, i - start));
            start = i + 1;
        }
    }
    return out;
}

std::vector<std::string> words(std::string_view s)
{
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
        if (c == ' ' || c == '\t') {
            if (!cur.empty()) out.push_back(std::move(cur));
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

bool number(std::string_view s, int& out)
{
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

constexpr const char* weekday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
constexpr const char* month_names[] = {"", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};

bool named(std::string_view s, const char* const* names, int first, int last, int& out)
{
    if (number(s, out)) return true;
    for (int i = first; i <= last; ++i) {
        if (s == names[i]) {
            out = i;
            return true;
        }
    }
    return false;
}

// One cron field ("*", "*/15", "1-5", "mon-fri", "1,15", "0-30/10") into `bits`; false on error.
template <std::size_t N>
bool cron_field(std::string_view field, int lo, int hi, const char* const* names, std::bitset<N>& bits, std::string& error,
                std::string_view what)
{
    for (const auto& item : split(field, ',')) {
        std::string_view range = item;
        int step = 1;
        if (auto slash = item.find('/'); slash != std::string::npos) {
            range = std::string_view(item).substr(0, slash);
            if (!number(std::string_view(item).substr(slash + 1), step) || step < 1) {
                error = std::string(what) + ": bad step in \"" + item + "\"";
                return false;
            }
        }
        int a = lo, b = hi;
        if (range != "*") {
            const auto dash = range.find('-');
            const auto first = range.substr(0, dash);
            const auto last = dash == std::string_view::npos ? first : range.substr(dash + 1);
            const int name_hi = names == weekday_names ? 6 : hi;
            if (!(names ? named(first, names, lo == 0 ? 0 : 1, name_hi, a) : number(first, a)) ||
                !(names ? named(last, names, lo == 0 ? 0 : 1, name_hi, b) : number(last, b))) {
                error = std::string(what) + ": \"" + item + "\" is not a number" + (names ? " or name" : "");
                return false;
            }
            if (dash == std::string_view::npos && item.find('/') != std::string::npos) b = hi; // "5/15" = 5-hi/15
        }
        if (a < lo || b > hi || a > b) {
            error = std::string(what) + ": \"" + item + "\" is outside " + std::to_string(lo) + "-" + std::to_string(hi);
            return false;
        }
        for (int v = a; v <= b; v += step) bits.set(static_cast<std::size_t>(v));
    }
    return true;
}

bool clock_time(std::string_view s, int& h, int& m, int* sec = nullptr)
{
    const auto parts = split(s, ':');
    if (parts.size() != 2 && !(sec && parts.size() == 3)) return false;
    if (!number(parts[0], h) || !number(parts[1], m) || h < 0 || h > 23 || m < 0 || m > 59 || parts[1].size() != 2) return false;
    if (parts.size() == 3) {
        if (!number(parts[2], *sec) || *sec < 0 || *sec > 59) return false;
    }
    return true;
}

const date::time_zone* zone(const std::string& tz)
{
    try {
        return date::locate_zone(tz);
    } catch (const std::exception&) {
        return nullptr;
    }
}

// The instant a local wall time fires (see the header for gaps and repeats).
sys_seconds resolve(const date::time_zone* z, date::local_seconds lt)
{
    const auto info = z->get_info(lt);
    switch (info.result) {
    case date::local_info::nonexistent: return info.first.end;
    default: return sys_seconds{lt.time_since_epoch() - info.first.offset};
    }
}

std::string key_of(date::local_seconds lt, bool with_seconds)
{
    return date::format(with_seconds ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%dT%H:%M", lt);
}

} // namespace

bool known_time_zone(std::string_view tz) { return zone(std::string(tz)) != nullptr; }

std::optional<std::string> parse_schedule(std::string_view text, ScheduleSpec& out)
{
    out.text = std::string(text);
    out.once = false;
    out.minutes.reset();
    out.hours.reset();
    out.days.reset();
    out.months.reset();
    out.weekdays.reset();
    out.any_day = out.any_weekday = true;
    const auto w = words(lower(text));
    if (w.empty()) return "empty schedule: write e.g. \"daily 09:00\" or a cron expression \"0 9 * * *\"";
    auto all = [&out] {
        for (int d = 1; d <= 31; ++d) out.days.set(static_cast<std::size_t>(d));
        for (int m = 1; m <= 12; ++m) out.months.set(static_cast<std::size_t>(m));
        out.weekdays.set();
    };
    if (w[0] == "at") {
        int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
        const auto ymd = w.size() == 3 ? split(w[1], '-') : std::vector<std::string>{};
        if (ymd.size() != 3 || !number(ymd[0], y) || !number(ymd[1], mo) || !number(ymd[2], d) || !clock_time(w[2], h, mi, &s)) {
            return "one-shot schedules are written \"at 2026-12-12 20:00\"";
        }
        const date::year_month_day date{date::year{y}, date::month{static_cast<unsigned>(mo)}, date::day{static_cast<unsigned>(d)}};
        if (!date.ok()) return "\"" + w[1] + "\" is not a date";
        out.once = true;
        out.once_local_s = (date::local_days{date} + hours{h} + minutes{mi} + seconds{s}).time_since_epoch().count();
        return std::nullopt;
    }
    if (w.size() == 2) {
        int h = 0, m = 0;
        if (!clock_time(w[1], h, m)) return "\"" + w[1] + "\" is not a time of day like 09:00";
        all();
        out.hours.set(static_cast<std::size_t>(h));
        out.minutes.set(static_cast<std::size_t>(m));
        if (w[0] == "daily") return std::nullopt;
        out.weekdays.reset();
        out.any_weekday = false;
        if (w[0] == "weekdays") {
            for (int d = 1; d <= 5; ++d) out.weekdays.set(static_cast<std::size_t>(d));
            return std::nullopt;
        }
        if (w[0] == "weekends") {
            out.weekdays.set(0);
            out.weekdays.set(6);
            return std::nullopt;
        }
        std::string error;
        if (!cron_field(w[0], 0, 6, weekday_names, out.weekdays, error, "days")) {
            return "\"" + w[0] + "\": expected daily, weekdays, weekends or days like mon,wed,fri";
        }
        return std::nullopt;
    }
    if (w.size() != 5) {
        return "expected \"daily 09:00\", \"weekdays 20:00\", \"mon,wed,fri 10:00\", \"at 2026-12-12 20:00\" or five cron fields "
               "(minute hour day month weekday)";
    }
    std::string error;
    std::bitset<8> wd;
    if (!cron_field(w[0], 0, 59, nullptr, out.minutes, error, "minute") || !cron_field(w[1], 0, 23, nullptr, out.hours, error, "hour") ||
        !cron_field(w[2], 1, 31, nullptr, out.days, error, "day of month") ||
        !cron_field(w[3], 1, 12, month_names, out.months, error, "month") ||
        !cron_field(w[4], 0, 7, weekday_names, wd, error, "day of week")) {
        return error;
    }
    for (std::size_t d = 0; d < 7; ++d) out.weekdays[d] = wd[d];
    if (wd[7]) out.weekdays.set(0); // 7 is Sunday too
    out.any_day = w[2] == "*";
    out.any_weekday = w[4] == "*";
    return std::nullopt;
}

std::optional<Slot> next_slot(const ScheduleSpec& spec, std::int64_t after_ms)
{
    const auto* z = zone(spec.tz);
    if (!z) return std::nullopt;
    const auto after = floor<seconds>(sys_time<milliseconds>(milliseconds(after_ms)));
    if (spec.once) {
        const date::local_seconds lt{seconds(spec.once_local_s)};
        const auto at = resolve(z, lt);
        if (at <= after) return std::nullopt;
        const bool with_seconds = spec.once_local_s % 60 != 0;
        return Slot{key_of(lt, with_seconds), duration_cast<milliseconds>(at.time_since_epoch()).count()};
    }
    const auto local_after = z->to_local(after);
    auto day = floor<date::days>(local_after) - date::days{1}; // a gap can move a slot of yesterday past midnight
    for (int i = 0; i < 366 * 8 + 3; ++i, day += date::days{1}) {
        const date::year_month_day ymd{day};
        if (!spec.months[static_cast<unsigned>(ymd.month())]) continue;
        const bool dom = spec.days[static_cast<unsigned>(ymd.day())];
        const bool dow = spec.weekdays[date::weekday{day}.c_encoding()];
        // Cron: when both day fields are restricted, either may match.
        const bool day_ok = spec.any_day && spec.any_weekday ? true
                            : spec.any_day                  ? dow
                            : spec.any_weekday              ? dom
                                                            : (dom || dow);
        if (!day_ok) continue;
        for (std::size_t h = 0; h < 24; ++h) {
            if (!spec.hours[h]) continue;
            // Offsets move wall time by a few hours at most: skip hours clearly behind.
            if (day + hours(h) + hours(1) + hours(4) <= local_after) continue;
            for (std::size_t m = 0; m < 60; ++m) {
                if (!spec.minutes[m]) continue;
                const date::local_seconds lt = day + hours(h) + minutes(m);
                const auto at = resolve(z, lt);
                if (at > after) return Slot{key_of(lt, false), duration_cast<milliseconds>(at.time_since_epoch()).count()};
            }
        }
    }
    return std::nullopt;
}

std::string format_local(std::int64_t at_ms, const std::string& tz)
{
    const auto* z = zone(tz);
    const auto t = floor<seconds>(sys_time<milliseconds>(milliseconds(at_ms)));
    if (!z) return date::format("%Y-%m-%d %H:%M UTC", t);
    return date::format("%Y-%m-%d %H:%M %Z", date::make_zoned(z, t));
}

} // namespace qunbot::rules

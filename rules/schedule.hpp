#pragma once
/// \file
/// When a `on: schedule` rule fires: a 5-field cron expression or a friendly form (`daily 09:00`,
/// `weekdays 20:00`, `weekends 10:00`, `mon,wed,fri 10:00`, one-shot `at 2026-12-12 20:00`), in
/// an IANA time zone from the system tz database. Pure: the caller passes the time.
///
/// Daylight-saving rules: a local time that happens twice (clocks go back) fires once, at its
/// first occurrence; a local time that does not exist (clocks jump forward) fires once, when
/// the gap ends, unless the schedule already fires at that instant (so `*/30` does not post
/// three times at 03:00).

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qunbot::rules {

struct ScheduleSpec {
    std::string text;                ///< as written
    std::string tz = "Asia/Shanghai";
    bool once = false;               ///< `at …`: a single firing
    std::int64_t once_local_s = 0;   ///< its local wall time, seconds since 1970-01-01 00:00 local
    std::bitset<60> minutes;
    std::bitset<24> hours;
    std::bitset<32> days;            ///< 1..31
    std::bitset<13> months;          ///< 1..12
    std::bitset<7> weekdays;         ///< 0 = Sunday
    bool any_day = true;             ///< day-of-month field is `*`
    bool any_weekday = true;         ///< day-of-week field is `*`
    enum class Missed { skip, catch_up };
    Missed missed = Missed::skip;    ///< slots missed while qunbot was down
    std::int64_t grace_ms = 30 * 60'000; ///< catch_up: how late a missed slot may still fire
    std::int64_t jitter_ms = 0;      ///< spread the slot's actions over this long
};

/// Parses `text` into `out` (keeping its tz and policies); returns an error message or nothing.
[[nodiscard]] std::optional<std::string> parse_schedule(std::string_view text, ScheduleSpec& out);
/// Whether the system tz database knows `tz`.
[[nodiscard]] bool known_time_zone(std::string_view tz);

/// One firing: `key` is its local wall time ("2026-03-08T02:30", what history shows and what
/// makes it unique per schedule), `at_ms` the instant it fires.
struct Slot {
    std::string key;
    std::int64_t at_ms = 0;
};

/// The first slot that fires strictly after `after_ms` (nothing for a past one-shot, or
/// when no date within 8 years matches, e.g. `0 9 30 2 *`).
[[nodiscard]] std::optional<Slot> next_slot(const ScheduleSpec& spec, std::int64_t after_ms);

/// "2026-03-08 09:00 CST" for `at_ms` in `tz`, for people.
[[nodiscard]] std::string format_local(std::int64_t at_ms, const std::string& tz);

} // namespace qunbot::rules

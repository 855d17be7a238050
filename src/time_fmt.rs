//! RFC 5322 §3.3 date-time formatting, because std has none.
//!
//! Pure: the time is an argument (unix seconds), never read from a clock.
//! Output is always in UTC with zone `+0000` and a four-digit year, e.g.
//! `Tue, 01 Dec 2026 04:12:19 +0000`.

/// The last second of year 9999: RFC 5322 §3.3 years are four digits here.
const MAX_UNIX_SECS: i64 = 253_402_300_799;

const SECS_PER_DAY: i64 = 86_400;

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats `unix_secs` as an RFC 5322 §3.3 `date-time` in UTC, e.g.
/// `Tue, 01 Dec 2026 04:12:19 +0000`.
///
/// Times before the epoch or after 9999-12-31T23:59:59Z are clamped to
/// those bounds: RFC 5322 has no year before 1900 and our format has four
/// year digits, and either case means a broken clock, not a real date.
pub fn rfc5322_date(unix_secs: i64) -> String {
    let secs = unix_secs.clamp(0, MAX_UNIX_SECS);
    let days = secs.div_euclid(SECS_PER_DAY);
    let secs_of_day = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    format!(
        "{weekday}, {day:02} {month} {year:04} {:02}:{:02}:{:02} +0000",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        month = MONTHS[(month - 1) as usize],
    )
}

/// The proleptic Gregorian (year, month 1..=12, day 1..=31) of a day count
/// since 1970-01-01, using eras of 400 years (146 097 days) that start on
/// 1 March so that the leap day is the last day of a year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097; // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_format_per_rfc5322() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (59, "Thu, 01 Jan 1970 00:00:59 +0000"),
            (86_399, "Thu, 01 Jan 1970 23:59:59 +0000"),
            (86_400, "Fri, 02 Jan 1970 00:00:00 +0000"),
            (68_169_600, "Tue, 29 Feb 1972 00:00:00 +0000"),
            (946_684_799, "Fri, 31 Dec 1999 23:59:59 +0000"),
            (946_684_800, "Sat, 01 Jan 2000 00:00:00 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (951_868_800, "Wed, 01 Mar 2000 00:00:00 +0000"),
            (978_307_199, "Sun, 31 Dec 2000 23:59:59 +0000"),
            (1_234_567_890, "Fri, 13 Feb 2009 23:31:30 +0000"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 +0000"),
            (2_147_483_647, "Tue, 19 Jan 2038 03:14:07 +0000"),
            (1_796_098_339, "Tue, 01 Dec 2026 04:12:19 +0000"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 +0000"),
            (4_107_456_000, "Sun, 28 Feb 2100 00:00:00 +0000"),
            (MAX_UNIX_SECS, "Fri, 31 Dec 9999 23:59:59 +0000"),
        ];
        for (secs, expected) in cases {
            assert_eq!(rfc5322_date(secs), expected, "{secs}");
        }
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        assert_eq!(rfc5322_date(-1), rfc5322_date(0));
        assert_eq!(rfc5322_date(i64::MIN), rfc5322_date(0));
        assert_eq!(rfc5322_date(i64::MAX), rfc5322_date(MAX_UNIX_SECS));
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walk 1970..2401 day by day: the day of month either increments or
        // restarts at 1 with the next month, and weekdays cycle.
        let mut prev = civil_from_days(0);
        for days in 1..(431 * 366) {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = d == 1 && ((y, m) == (py, pm + 1) || (y, m, pm) == (py + 1, 1, 12));
            assert!(next_day || next_month, "{prev:?} -> {:?}", (y, m, d));
            if next_month {
                let leap = (py % 4 == 0 && py % 100 != 0) || py % 400 == 0;
                let month_len = match pm {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(pd, month_len, "{py}-{pm}");
            }
            prev = (y, m, d);
        }
    }
}

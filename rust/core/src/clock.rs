//! Timestamps as records keep them: RFC 3339 in UTC with nanoseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, formatted, and as nanoseconds since the epoch (for ordering).
pub fn now() -> (String, u128) {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (rfc3339(since_epoch.as_secs(), since_epoch.subsec_nanos()), since_epoch.as_nanos())
}

/// Formats a UTC timestamp as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+00:00`.
pub fn rfc3339(seconds: u64, nanos: u32) -> String {
    let days = seconds / 86_400;
    let time = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let shifted = days as i64 + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}+00:00",
        time / 3600,
        (time % 3600) / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000+00:00");
        assert_eq!(rfc3339(1_795_870_540, 289_582_752), "2026-11-28T12:55:40.289582752+00:00");
        assert_eq!(rfc3339(951_782_400, 1), "2000-02-29T00:00:00.000000001+00:00");
    }
}

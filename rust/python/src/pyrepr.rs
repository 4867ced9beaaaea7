//! Python's `repr()` of strings, for the `__repr__` of the classes.

/// `repr()` of an optional str, as Python writes it.
pub fn python_repr(value: Option<&str>) -> String {
    value.map_or_else(|| "None".to_string(), |text| format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")))
}

/// `repr()` of a list of str, as Python writes it.
pub fn python_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| python_repr(Some(item))).collect();
    format!("[{}]", items.join(", "))
}

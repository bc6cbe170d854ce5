//! Offset paging: `?page=0&size=20`, answered as `{"items","page","size","totalElements","totalPages","hasNext"}`.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Largest page size.
pub const MAX_PAGE_SIZE: u64 = 100;
/// Highest page number accepted (keeps `page × size` far from overflow).
pub const MAX_PAGE: u64 = 10_000_000;

/// `page` (from 0) and `size` (1..=100) as given in the query string.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PageQuery {
    pub page: Option<String>,
    pub size: Option<String>,
}

/// A validated page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u64,
    pub size: u64,
}

impl PageQuery {
    pub fn validate(&self) -> Result<PageRequest, ApiError> {
        parse_page(&self.page, &self.size)
    }
}

/// `page` and `size` of an offset page: the one parser of every paged route and dashboard.
pub fn parse_page(page: &Option<String>, size: &Option<String>) -> Result<PageRequest, ApiError> {
    Ok(PageRequest {
        page: parse_number("page", page, 0, 0, MAX_PAGE)?,
        size: parse_number("size", size, DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)?,
    })
}

/// A whole number parameter in `min..=max`, `default` when absent or empty; the `400` names it.
pub fn parse_number(
    name: &str,
    value: &Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let Some(text) = given(value) else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be a whole number between {min} and {max}, not `{}`",
            quoted(text)
        ))),
    }
}

/// `400` for a text with a NUL character: PostgreSQL cannot store or compare one (it would be a `500`),
/// and no name, queue or search of this API holds one.
pub fn without_nul(name: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "{name} must not contain a NUL character"
        )));
    }
    Ok(())
}

/// A parameter's value, unless it is absent or blank.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// At most 64 characters of a bad value, to quote it back.
pub fn quoted(value: &str) -> String {
    let mut shown: String = value.chars().take(64).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    shown
}

impl PageRequest {
    pub fn offset(self) -> u64 {
        self.page * self.size
    }
}

/// One page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The page number, from 0.
    pub page: u64,
    /// The page size asked for.
    pub size: u64,
    pub total_elements: u64,
    /// ⌈`totalElements` / `size`⌉.
    pub total_pages: u64,
    /// `page + 1 < totalPages`.
    pub has_next: bool,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, request: PageRequest, total_elements: u64) -> Self {
        let total_pages = total_elements.div_ceil(request.size);
        Page {
            items,
            page: request.page,
            size: request.size,
            total_elements,
            total_pages,
            has_next: request.page + 1 < total_pages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(page: u64, size: u64) -> PageRequest {
        PageRequest { page, size }
    }

    #[test]
    fn paging_math_at_the_edges() {
        let p = Page::<()>::new(vec![], req(0, 20), 0);
        assert_eq!((p.total_pages, p.has_next), (0, false));
        let p = Page::<()>::new(vec![], req(0, 20), 20);
        assert_eq!((p.total_pages, p.has_next), (1, false));
        let p = Page::<()>::new(vec![], req(0, 20), 21);
        assert_eq!((p.total_pages, p.has_next), (2, true));
        let p = Page::<()>::new(vec![], req(1, 20), 21);
        assert_eq!((p.total_pages, p.has_next), (2, false));
        let p = Page::<()>::new(vec![], req(5, 20), 21);
        assert_eq!((p.total_pages, p.has_next), (2, false));
    }

    #[test]
    fn sizes_are_bounded() {
        let query = |page: Option<&str>, size: Option<&str>| PageQuery {
            page: page.map(str::to_owned),
            size: size.map(str::to_owned),
        };
        assert!(query(None, Some("0")).validate().is_err());
        assert!(query(None, Some("101")).validate().is_err());
        assert!(query(None, Some("ten")).validate().is_err());
        assert_eq!(
            PageQuery::default().validate().ok(),
            Some(req(0, DEFAULT_PAGE_SIZE))
        );
        assert_eq!(
            query(Some(" "), Some("")).validate().ok(),
            Some(req(0, DEFAULT_PAGE_SIZE))
        );
        let too_far = (MAX_PAGE + 1).to_string();
        assert!(query(Some(&too_far), None).validate().is_err());
    }
}

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
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct PageQuery {
    pub page: Option<u64>,
    pub size: Option<u64>,
}

/// A validated page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u64,
    pub size: u64,
}

impl PageQuery {
    pub fn validate(self) -> Result<PageRequest, ApiError> {
        let page = self.page.unwrap_or(0);
        let size = self.size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::BadRequest(format!(
                "size must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        if page > MAX_PAGE {
            return Err(ApiError::BadRequest(format!(
                "page must be between 0 and {MAX_PAGE}"
            )));
        }
        Ok(PageRequest { page, size })
    }
}

impl PageRequest {
    pub fn offset(self) -> u64 {
        self.page * self.size
    }
}

/// One page of results.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u64,
    pub size: u64,
    pub total_elements: u64,
    pub total_pages: u64,
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
        assert!(
            PageQuery {
                page: None,
                size: Some(0)
            }
            .validate()
            .is_err()
        );
        assert!(
            PageQuery {
                page: None,
                size: Some(101)
            }
            .validate()
            .is_err()
        );
        assert_eq!(
            PageQuery::default().validate().ok(),
            Some(req(0, DEFAULT_PAGE_SIZE))
        );
        assert!(
            PageQuery {
                page: Some(MAX_PAGE + 1),
                size: None
            }
            .validate()
            .is_err()
        );
    }
}

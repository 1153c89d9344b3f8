//! A Service's endpoints: one shared chunk per EndpointSlice, so a snapshot and the builder
//! that made it hold each slice's endpoints once.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::EndpointView;

/// The endpoints of every slice of a Service, in slice-name order.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    chunks: Vec<Arc<[EndpointView]>>,
    len: usize,
}

impl Endpoints {
    /// Endpoints made of per-slice chunks, shared with whoever else holds them.
    pub fn from_chunks(chunks: impl IntoIterator<Item = Arc<[EndpointView]>>) -> Self {
        let mut chunks: Vec<_> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        chunks.shrink_to_fit();
        let len = chunks.iter().map(|c| c.len()).sum();
        Self { chunks, len }
    }

    /// Every endpoint, chunk after chunk.
    pub fn iter(&self) -> EndpointsIter<'_> {
        self.chunks.iter().flat_map(chunk_iter)
    }

    /// The `index`th endpoint.
    pub fn get(&self, mut index: usize) -> Option<&EndpointView> {
        for chunk in &self.chunks {
            match chunk.get(index) {
                Some(endpoint) => return Some(endpoint),
                None => index -= chunk.len(),
            }
        }
        None
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Equal when they list the same endpoints, however they are chunked.
impl PartialEq for Endpoints {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Endpoints {}

impl From<Vec<EndpointView>> for Endpoints {
    fn from(list: Vec<EndpointView>) -> Self {
        Self::from_chunks([Arc::from(list)])
    }
}

impl FromIterator<EndpointView> for Endpoints {
    fn from_iter<I: IntoIterator<Item = EndpointView>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

/// An iterator over every endpoint, chunk after chunk (named, so `for ep in &endpoints`
/// needs no allocation).
pub type EndpointsIter<'a> = std::iter::FlatMap<
    std::slice::Iter<'a, Arc<[EndpointView]>>,
    std::slice::Iter<'a, EndpointView>,
    fn(&'a Arc<[EndpointView]>) -> std::slice::Iter<'a, EndpointView>,
>;

fn chunk_iter(chunk: &Arc<[EndpointView]>) -> std::slice::Iter<'_, EndpointView> {
    chunk.iter()
}

impl<'a> IntoIterator for &'a Endpoints {
    type Item = &'a EndpointView;
    type IntoIter = EndpointsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Endpoints {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for endpoint in self.iter() {
            seq.serialize_element(endpoint)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn endpoint(last: u8) -> EndpointView {
        EndpointView {
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            other_addresses: Vec::new(),
            hostname: None,
            node_name: None,
            ready: true,
            serving: true,
            terminating: false,
            ports: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn chunks_read_as_one_list_in_order_and_share_their_storage() {
        let a: Arc<[EndpointView]> = Arc::from(vec![endpoint(1), endpoint(2)]);
        let empty: Arc<[EndpointView]> = Arc::from(Vec::new());
        let b: Arc<[EndpointView]> = Arc::from(vec![endpoint(3)]);
        let eps = Endpoints::from_chunks([Arc::clone(&a), empty, Arc::clone(&b)]);
        assert_eq!(eps.len(), 3);
        let lasts: Vec<_> = eps.iter().map(|e| e.address.to_string()).collect();
        assert_eq!(lasts, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(eps.get(2), Some(&endpoint(3)));
        assert_eq!(eps.get(3), None);
        assert_eq!(Arc::strong_count(&a), 2, "the chunk is shared, not copied");
        assert_eq!(
            eps,
            vec![endpoint(1), endpoint(2), endpoint(3)]
                .into_iter()
                .collect()
        );
        let json = serde_json::to_value(&eps).expect("serializes");
        assert_eq!(json.as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn none_is_empty() {
        let eps = Endpoints::default();
        assert!(eps.is_empty());
        assert_eq!(eps.iter().count(), 0);
    }
}

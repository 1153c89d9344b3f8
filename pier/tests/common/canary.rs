//! What the canary release tests share: the Services and HTTPRoute of the Gateway API
//! plugin's examples (a front Service the route attaches to, GAMMA style, and stable and
//! canary Services behind it), and the URL that reaches the front Service on a test node.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use super::runtime::Node;

/// Services `APP`, `APP-stable`, `APP-canary` on port `http` of pods labelled `app: APP`, and
/// HTTPRoute `APP-route` from the first to the other two.
pub(crate) fn services_and_route(app: &str) -> String {
    "apiVersion: v1
kind: Service
metadata: {name: APP}
spec:
  selector: {app: APP}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: APP-stable}
spec:
  selector: {app: APP}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: APP-canary}
spec:
  selector: {app: APP}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: APP-route}
spec:
  parentRefs: [{group: core, kind: Service, name: APP, port: 80}]
  rules:
  - backendRefs:
    - {group: core, kind: Service, name: APP-stable, port: 80}
    - {group: core, kind: Service, name: APP-canary, port: 80}
"
    .replace("APP", app)
}

/// The URL of Service `name`'s port 80 as the test node's loopback maps it.
pub(crate) fn front_url(node: &Node, name: &str) -> String {
    format!("http://{}/", front_addr(node, name, 80))
}

/// Service `name`'s `port` as the test node's loopback maps it (`127.b.c.d`, port + 21000).
pub(crate) fn front_addr(node: &Node, name: &str, port: u16) -> std::net::SocketAddr {
    let vip = node.d().get_json(&["svc", name])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let o: Vec<&str> = vip.split('.').collect();
    format!("127.{}.{}.{}:{}", o[1], o[2], o[3], 21000 + u32::from(port))
        .parse()
        .unwrap()
}

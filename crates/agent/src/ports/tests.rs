use super::*;
use proptest::prelude::*;

/// Real socket tables of a Debian host (`testdata/`), with a UDP socket
/// bound and one connected, a TCP connection, and an IPv4-mapped listener.
const TCP: &str = include_str!("testdata/tcp");
const TCP6: &str = include_str!("testdata/tcp6");
const UDP: &str = include_str!("testdata/udp");
const UDP6: &str = include_str!("testdata/udp6");

/// `(address, port, inode)` per listening socket of `text`.
fn check(text: &str, protocol: Protocol, expect: &[(&str, u16, u64)]) {
    let mut got = Vec::new();
    parse_proc_net(text.as_bytes(), protocol, &PortLimits::default(), &mut got).expect("parses");
    let got: Vec<_> = got
        .iter()
        .map(|s| {
            assert_eq!(s.protocol, protocol);
            (s.address.as_str(), s.port, s.inode)
        })
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn tcp_listeners_are_the_sockets_in_listen_state() {
    check(
        TCP,
        Protocol::Tcp,
        &[
            ("127.0.0.1", 4369, 6463),
            ("127.0.0.1", 4222, 6494),
            ("127.0.0.1", 5672, 6555),
            ("127.0.0.1", 5432, 5178),
            ("127.0.0.1", 6379, 4818),
            ("127.0.0.1", 1883, 7445),
            ("127.0.0.1", 3306, 9946),
            ("0.0.0.0", 2024, 1090),
            ("127.0.0.1", 25672, 7779),
            ("0.0.0.0", 2222, 25909),
        ],
    );
    check(
        TCP6,
        Protocol::Tcp,
        &[
            ("::1", 4369, 6464),
            ("::1", 6379, 4819),
            ("::ffff:127.0.0.1", 8443, 25912),
        ],
    );
}

#[test]
fn udp_listeners_are_bound_and_unconnected() {
    // The connected socket (to port 53) is not listening.
    check(UDP, Protocol::Udp, &[("0.0.0.0", 5353, 25906)]);
    check(UDP6, Protocol::Udp, &[("::", 546, 25908)]);
}

#[test]
fn an_empty_table_has_only_its_header() {
    check("  sl  local_address rem_address   st\n", Protocol::Udp, &[]);
    check("", Protocol::Tcp, &[]);
}

#[test]
fn malformed_tables_are_refused_with_the_line() {
    let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    for (line, why) in [
        ("   0: 0100007F:1111 00000000:0000 0A\n", "too few fields"),
        (
            "   0: 0100007G:1111 00000000:0000 0A 0:0 0:0 0 0 0 6463\n",
            "not hex",
        ),
        (
            "   0: 0100007F:11111 00000000:0000 0A 0:0 0:0 0 0 0 6463\n",
            "port over 16 bits",
        ),
        (
            "   0: 01007F:1111 00000000:0000 0A 0:0 0:0 0 0 0 6463\n",
            "address of 6 digits",
        ),
        (
            "   0: 0100007F:1111 00000000:0000 0A 0:0 0:0 0 0 0 -1\n",
            "negative inode",
        ),
        (
            "   0: +100007F:1111 00000000:0000 0A 0:0 0:0 0 0 0 1\n",
            "sign in the address",
        ),
    ] {
        let mut out = Vec::new();
        assert_eq!(
            parse_proc_net(
                format!("{header}{line}").as_bytes(),
                Protocol::Tcp,
                &PortLimits::default(),
                &mut out
            ),
            Err(PortsError::Malformed { line: 2 }),
            "{why}"
        );
    }
}

#[test]
fn limits_are_enforced() {
    let small = PortLimits {
        max_input_bytes: TCP.len() - 1,
        ..PortLimits::default()
    };
    let mut out = Vec::new();
    assert_eq!(
        parse_proc_net(TCP.as_bytes(), Protocol::Tcp, &small, &mut out),
        Err(PortsError::TooLarge { max: TCP.len() - 1 })
    );
    let few = PortLimits {
        max_ports: 9,
        ..PortLimits::default()
    };
    assert_eq!(
        parse_proc_net(TCP.as_bytes(), Protocol::Tcp, &few, &mut out),
        Err(PortsError::TooManyPorts { max: 9 })
    );
    // The cap counts across tables: udp's one socket does not fit after tcp's ten.
    let ten = PortLimits {
        max_ports: 10,
        ..PortLimits::default()
    };
    let mut out = Vec::new();
    parse_proc_net(TCP.as_bytes(), Protocol::Tcp, &ten, &mut out).expect("ten fit");
    assert!(parse_proc_net(UDP.as_bytes(), Protocol::Udp, &ten, &mut out).is_err());
}

#[test]
fn fd_links_name_socket_inodes() {
    assert_eq!(owner_inode(b"socket:[25909]"), Some(25909));
    assert_eq!(owner_inode(b"socket:[]"), None);
    assert_eq!(owner_inode(b"pipe:[25909]"), None);
    assert_eq!(owner_inode(b"/dev/null"), None);
    assert_eq!(owner_inode(b"socket:[99999999999999999999]"), None);
}

#[test]
fn ports_are_sorted_deduplicated_and_owned_where_known() {
    let socket = |protocol, address: &str, port, inode| Socket {
        protocol,
        address: address.into(),
        port,
        inode,
    };
    let sockets = [
        socket(Protocol::Udp, "0.0.0.0", 53, 1),
        socket(Protocol::Tcp, "0.0.0.0", 443, 2),
        // SO_REUSEPORT: two workers, two sockets, one port.
        socket(Protocol::Tcp, "0.0.0.0", 80, 3),
        socket(Protocol::Tcp, "0.0.0.0", 80, 4),
        socket(Protocol::Tcp, "::", 80, 5),
    ];
    let owners = HashMap::from([
        (
            3,
            Owner {
                pid: 920,
                name: "nginx".into(),
            },
        ),
        (
            4,
            Owner {
                pid: 910,
                name: "nginx".into(),
            },
        ),
        (
            1,
            Owner {
                pid: 7,
                name: "x".repeat(300),
            },
        ),
    ]);
    let got: Vec<_> = assemble(&sockets, &owners)
        .into_iter()
        .map(|p| {
            (
                p.protocol,
                p.address,
                p.port,
                p.process.map(|n| n.len()),
                p.pid,
            )
        })
        .collect();
    let t = |s: &str| s.to_owned();
    assert_eq!(
        got,
        [
            (t("tcp"), t("0.0.0.0"), 80, Some(5), Some(910)),
            (t("tcp"), t("::"), 80, None, None),
            (t("tcp"), t("0.0.0.0"), 443, None, None),
            (t("udp"), t("0.0.0.0"), 53, Some(256), Some(7)),
        ]
    );
}

/// A socket listening in this test is found, with this process as owner.
#[test]
fn this_machine_shows_a_listener_of_this_process() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let limits = PortLimits::default();
    let sockets = read_listening_sockets(&limits)
        .expect("socket tables read")
        .expect("Linux has /proc/net");
    let wanted = sockets.iter().map(|s| s.inode).collect();
    let ports = assemble(&sockets, &read_socket_owners(&wanted, &limits));
    let mine = ports
        .iter()
        .find(|p| p.protocol == "tcp" && p.port == port && p.address == "127.0.0.1")
        .expect("our listener is reported");
    assert_eq!(mine.pid, Some(std::process::id()));
    assert!(mine.process.is_some());
}

/// Renders sockets as the kernel does (`%08X` of each native-order word).
fn render(sockets: &[(std::net::IpAddr, u16, u64)], tcp: bool) -> String {
    let mut text = String::from(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
    );
    for (i, (address, port, inode)) in sockets.iter().enumerate() {
        let words: Vec<u8> = match address {
            std::net::IpAddr::V4(a) => a.octets().to_vec(),
            std::net::IpAddr::V6(a) => a.octets().to_vec(),
        };
        let hex: String = words
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect();
        let zero = "0".repeat(hex.len());
        let state = if tcp { "0A" } else { "07" };
        text.push_str(&format!(
            "{i:4}: {hex}:{port:04X} {zero}:0000 {state} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
        ));
    }
    text
}

proptest! {
    /// parse(render(x)) == x for any address, port and inode.
    #[test]
    fn parsing_reads_back_what_the_kernel_writes(
        sockets in proptest::collection::vec((any::<std::net::IpAddr>(), any::<u16>(), any::<u64>()), 0..20),
        tcp in any::<bool>(),
    ) {
        let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
        let mut out = Vec::new();
        parse_proc_net(render(&sockets, tcp).as_bytes(), protocol, &PortLimits::default(), &mut out).expect("parses");
        let got: Vec<_> = out.into_iter().map(|s| (s.address, s.port, s.inode)).collect();
        let expect: Vec<_> = sockets.iter().map(|(a, p, i)| (a.to_string(), *p, *i)).collect();
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn any_bytes_give_sockets_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut out = Vec::new();
        let _ = parse_proc_net(&bytes, Protocol::Tcp, &PortLimits::default(), &mut out);
        prop_assert!(out.len() <= PortLimits::default().max_ports);
    }
}

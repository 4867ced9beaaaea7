//! The box's network rules, loaded into its network namespace by this (single-threaded)
//! process with one nf_tables netlink batch: no library and no `nft` process, the same for a
//! runtime that runs as root or as an ordinary user. docs/network.md shows the rules as
//! `nft list ruleset` prints them; this is them in the kernel's own terms (the constants are
//! those of <linux/netfilter/nf_tables.h> and <linux/netfilter/nfnetlink.h>), and
//! `tests/test_network.py::test_a_boxs_rules_are_the_documented_ones` compares the two.

use boxlite_protocol::network::PROXY_PORT;

use crate::netlink::{Writer, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};
use crate::sys::{Result, SysError};

const NETLINK_NETFILTER: libc::c_int = 12;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_IPV4: u8 = 2;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

/// The one register the rules use besides the verdict's (`NFT_REG_1`, `NFT_REG_VERDICT`).
const REGISTER: u32 = 1;
const VERDICT_REGISTER: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_ACCEPT: i32 = 1;
const NFT_RETURN: i32 = -5;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// The loopback interface's index, in a namespace of its own.
const LOOPBACK_INDEX: u32 = 1;
/// `IPS_DST_NAT` of <linux/netfilter/nf_conntrack_common.h>.
const DESTINATION_NATTED: u32 = 0x20;

const TABLE: &str = "boxlite";

/// Loads the box's rules into this process's network namespace.
pub fn load_rules() -> Result<()> {
    rules_batch().send(NETLINK_NETFILTER).map_err(|source| SysError { operation: "failed to load the box's network rules".to_string(), source })
}

fn rules_batch() -> Writer {
    let mut batch = Batch::default();
    batch.control(NFNL_MSG_BATCH_BEGIN);
    batch.message(NFT_MSG_NEWTABLE, NLM_F_CREATE, |message| message.string(NFTA_TABLE_NAME, TABLE));
    batch.chain("divert", "nat", -100);
    batch.chain("egress", "filter", 0);
    // divert: what leaves through loopback stays; every TCP connection (DNS over TCP too: the
    // proxy answers those) goes to the proxy's port.
    batch.rule("divert", |rule| {
        rule.meta(Meta::OutputInterface);
        rule.compare(Compare::Equal, &LOOPBACK_INDEX.to_ne_bytes());
        rule.verdict(NFT_RETURN);
    });
    batch.rule("divert", |rule| {
        rule.meta(Meta::Layer4Protocol);
        rule.compare(Compare::Equal, &[IPPROTO_TCP]);
        rule.redirect_to(PROXY_PORT);
    });
    // egress: loopback and what was diverted pass, UDP goes out through the interface to the
    // runtime (which applies the policy to each datagram); TCP is reset, the rest refused.
    batch.rule("egress", |rule| {
        rule.meta(Meta::OutputInterface);
        rule.compare(Compare::Equal, &LOOPBACK_INDEX.to_ne_bytes());
        rule.verdict(NF_ACCEPT);
    });
    batch.rule("egress", |rule| {
        rule.conntrack_status();
        rule.mask(DESTINATION_NATTED);
        rule.compare(Compare::NotEqual, &0u32.to_ne_bytes());
        rule.verdict(NF_ACCEPT);
    });
    batch.rule("egress", |rule| {
        rule.meta(Meta::Layer4Protocol);
        rule.compare(Compare::Equal, &[IPPROTO_UDP]);
        rule.verdict(NF_ACCEPT);
    });
    batch.rule("egress", |rule| {
        rule.meta(Meta::Layer4Protocol);
        rule.compare(Compare::Equal, &[IPPROTO_TCP]);
        rule.reject(Reject::TcpReset);
    });
    batch.rule("egress", |rule| rule.reject(Reject::PortUnreachable));
    batch.control(NFNL_MSG_BATCH_END);
    batch.writer
}

/// nf_tables messages, numbered one after the other.
#[derive(Default)]
struct Batch {
    writer: Writer,
    sequence: u32,
}

impl Batch {
    /// A batch's begin or end.
    fn control(&mut self, kind: u16) {
        self.sequence += 1;
        self.writer.begin_message(kind, NLM_F_REQUEST, self.sequence, &nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
        self.writer.end_message();
    }

    fn message(&mut self, kind: u16, flags: u16, build: impl FnOnce(&mut Writer)) {
        self.sequence += 1;
        self.writer.begin_message((NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST | NLM_F_ACK | flags, self.sequence, &nfgenmsg(NFPROTO_IPV4, 0));
        build(&mut self.writer);
        self.writer.end_message();
    }

    /// A base chain of the table on the output hook, accepting by default.
    fn chain(&mut self, name: &str, kind: &str, priority: i32) {
        self.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, |message| {
            message.string(NFTA_CHAIN_TABLE, TABLE);
            message.string(NFTA_CHAIN_NAME, name);
            message.nest(NFTA_CHAIN_HOOK, |hook| {
                hook.be32(NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT);
                hook.be32(NFTA_HOOK_PRIORITY, priority.cast_unsigned());
            });
            message.be32(NFTA_CHAIN_POLICY, NF_ACCEPT.cast_unsigned());
            message.string(NFTA_CHAIN_TYPE, kind);
        });
    }

    /// A rule appended to `chain`, its expressions written by `expressions`.
    fn rule(&mut self, chain: &str, expressions: impl FnOnce(&mut Rule<'_>)) {
        self.message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, |message| {
            message.string(NFTA_RULE_TABLE, TABLE);
            message.string(NFTA_RULE_CHAIN, chain);
            message.nest(NFTA_RULE_EXPRESSIONS, |list| expressions(&mut Rule(list)));
        });
    }
}

enum Meta {
    OutputInterface,
    Layer4Protocol,
}

enum Compare {
    Equal,
    NotEqual,
}

enum Reject {
    /// ICMP port unreachable (what `reject` means for IPv4).
    PortUnreachable,
    TcpReset,
}

/// A rule's expressions, each loading into or testing [`REGISTER`].
struct Rule<'a>(&'a mut Writer);

impl Rule<'_> {
    fn expression(&mut self, name: &str, data: impl FnOnce(&mut Writer)) {
        self.0.nest(NFTA_LIST_ELEM, |element| {
            element.string(NFTA_EXPR_NAME, name);
            element.nest(NFTA_EXPR_DATA, data);
        });
    }

    fn meta(&mut self, key: Meta) {
        // NFTA_META_DREG, NFTA_META_KEY; NFT_META_OIF, NFT_META_L4PROTO.
        let key = match key {
            Meta::OutputInterface => 5,
            Meta::Layer4Protocol => 16,
        };
        self.expression("meta", |data| {
            data.be32(1, REGISTER);
            data.be32(2, key);
        });
    }

    fn compare(&mut self, operation: Compare, value: &[u8]) {
        // NFTA_CMP_SREG, NFTA_CMP_OP, NFTA_CMP_DATA; NFT_CMP_EQ, NFT_CMP_NEQ.
        let operation = match operation {
            Compare::Equal => 0,
            Compare::NotEqual => 1,
        };
        self.expression("cmp", |data| {
            data.be32(1, REGISTER);
            data.be32(2, operation);
            data.nest(3, |compared| compared.attribute(NFTA_DATA_VALUE, value));
        });
    }

    /// Redirects to `port` on the loopback address of the namespace.
    fn redirect_to(&mut self, port: u16) {
        // NFTA_IMMEDIATE_DREG, NFTA_IMMEDIATE_DATA; NFTA_REDIR_REG_PROTO_MIN, NFTA_REDIR_FLAGS
        // (NF_NAT_RANGE_PROTO_SPECIFIED).
        self.expression("immediate", |data| {
            data.be32(1, REGISTER);
            data.nest(2, |value| value.attribute(NFTA_DATA_VALUE, &port.to_be_bytes()));
        });
        self.expression("redir", |data| {
            data.be32(1, REGISTER);
            data.be32(3, 2);
        });
    }

    fn verdict(&mut self, code: i32) {
        self.expression("immediate", |data| {
            data.be32(1, VERDICT_REGISTER);
            data.nest(2, |value| value.nest(NFTA_DATA_VERDICT, |verdict| verdict.be32(NFTA_VERDICT_CODE, code.cast_unsigned())));
        });
    }

    /// Loads the connection's conntrack status.
    fn conntrack_status(&mut self) {
        // NFTA_CT_DREG, NFTA_CT_KEY (NFT_CT_STATUS).
        self.expression("ct", |data| {
            data.be32(1, REGISTER);
            data.be32(2, 2);
        });
    }

    /// Keeps the bits of `mask` in the register (a 32-bit host-order value).
    fn mask(&mut self, mask: u32) {
        // NFTA_BITWISE_SREG, _DREG, _LEN, _MASK, _XOR.
        self.expression("bitwise", |data| {
            data.be32(1, REGISTER);
            data.be32(2, REGISTER);
            data.be32(3, 4);
            data.nest(4, |value| value.attribute(NFTA_DATA_VALUE, &mask.to_ne_bytes()));
            data.nest(5, |value| value.attribute(NFTA_DATA_VALUE, &0u32.to_ne_bytes()));
        });
    }

    fn reject(&mut self, how: Reject) {
        // NFTA_REJECT_TYPE (NFT_REJECT_ICMP_UNREACH, NFT_REJECT_TCP_RST), NFTA_REJECT_ICMP_CODE
        // (ICMP_PORT_UNREACH for the first).
        let (kind, code) = match how {
            Reject::PortUnreachable => (0, 3),
            Reject::TcpReset => (1, 0),
        };
        self.expression("reject", |data| {
            data.be32(1, kind);
            data.attribute(2, &[code]);
        });
    }
}

/// A `struct nfgenmsg`: the family, version 0, and the resource (big-endian).
fn nfgenmsg(family: u8, resource: u16) -> [u8; 4] {
    let [high, low] = resource.to_be_bytes();
    [family, 0, high, low]
}

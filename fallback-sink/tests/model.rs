//! The spool against a reference model (a FIFO queue), over random sequences of appends,
//! reads, commits and reopens, with tiny segments so rotation and deletion happen often.

use std::collections::VecDeque;

use proptest::prelude::*;
use seawall_fallback_sink::{Durability, Envelope, Error, Spool};

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Read(usize),
    ReadCommit(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..6).prop_map(Op::Append),
        2 => (1usize..8).prop_map(Op::Read),
        3 => (1usize..8).prop_map(Op::ReadCommit),
        1 => Just(Op::Reopen),
    ]
}

async fn open(dir: &std::path::Path) -> Spool {
    Spool::builder(dir)
        .durability(Durability::Never)
        .segment_bytes(300)
        .max_bytes(2000)
        .open()
        .await
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn spool_behaves_like_a_queue(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut spool = open(dir.path()).await;
            let mut model: VecDeque<u64> = VecDeque::new();
            let mut next = 0u64;
            let mut last_seq = 0u64;
            for op in ops {
                match op {
                    Op::Append(k) => {
                        for _ in 0..k {
                            match spool.append(&Envelope::new(next)).await {
                                Ok(seq) => {
                                    assert!(seq > last_seq, "sequence numbers rise");
                                    last_seq = seq;
                                    model.push_back(next);
                                }
                                Err(Error::Full { bytes, record_bytes, max_bytes }) => {
                                    assert!(bytes + record_bytes > max_bytes);
                                    assert_eq!(bytes, spool.stats().bytes);
                                }
                                Err(e) => panic!("{e}"),
                            }
                            next += 1;
                        }
                    }
                    Op::Read(n) | Op::ReadCommit(n) => {
                        let b = spool.read_batch(n).await.unwrap();
                        let got: Vec<u64> =
                            b.records.iter().map(|r| r.decode::<u64>().unwrap().payload).collect();
                        let want: Vec<u64> = model.iter().take(n).copied().collect();
                        assert_eq!(got, want);
                        if matches!(op, Op::ReadCommit(_)) {
                            spool.commit(&b).await.unwrap();
                            model.drain(..got.len());
                        }
                    }
                    Op::Reopen => {
                        spool.close().await.unwrap();
                        spool = open(dir.path()).await;
                    }
                }
                let st = spool.stats();
                assert_eq!(st.records, model.len() as u64);
                assert_eq!(st.oldest.is_some(), !model.is_empty());
                assert_eq!(st.quarantined, 0);
            }
            spool.close().await.unwrap();
        });
    }
}

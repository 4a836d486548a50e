//! Lease preshared keys at rest: sealed with the broker's secrets key while the lease lives,
//! erased when it ends, sealed at start if an older broker left them in plaintext; and the edge
//! still receives the keys its clients hold.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use crate::common::*;
use grantwire_proto::{GrantRevokeRequest, LeaseResponse, LeaseRevokeRequest, Profile};

/// Every file of the database (main file, WAL, shared memory) that holds `needle`.
fn files_holding(data_dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    ["broker.db", "broker.db-wal", "broker.db-shm"]
        .iter()
        .map(|f| data_dir.join(f))
        .filter(|p| {
            std::fs::read(p).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// The stored preshared key column of lease `id`, read beside the running broker.
fn stored_psk(data_dir: &Path, id: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("broker.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row("SELECT preshared_key FROM leases WHERE id = ?", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

async fn lease(h: &Harness, token: &str) -> Profile {
    let resp = h.request_lease(token, "home").await;
    assert_eq!(resp.status(), 200);
    resp.json::<LeaseResponse>().await.unwrap().profile
}

#[tokio::test]
async fn live_keys_are_sealed_in_the_file_and_ended_ones_erased() {
    let (h, token, credential, _) = Harness::granted().await;
    let mut events = SseReader::new(h.open_sync(&credential).await);
    assert!(events.next_set().await.leases.is_empty());
    let profiles = [
        lease(&h, &token).await,
        lease(&h, &token).await,
        lease(&h, &token).await,
    ];
    let data_dir = h.broker.data_dir().to_path_buf();

    // The edge gets the very keys the clients hold.
    let mut set = events.next_set().await;
    while set.leases.len() < 3 {
        set = events.next_set().await;
    }
    for p in &profiles {
        let pushed = set.leases.iter().find(|l| l.id == p.lease_id).unwrap();
        assert_eq!(pushed.preshared_key, p.preshared_key);
        // No byte run of the key anywhere in the database's files.
        let key = p.preshared_key.as_bytes();
        assert_eq!(files_holding(&data_dir, key), Vec::<PathBuf>::new());
        assert_eq!(files_holding(&data_dir, &key[..16]), Vec::<PathBuf>::new());
        assert_eq!(stored_psk(&data_dir, &p.lease_id).len(), 12 + 32 + 16);
    }

    // Revoked one by one, and by grant: the column is emptied in the same write.
    h.broker
        .admin()
        .leases()
        .revoke(LeaseRevokeRequest {
            id: profiles[0].lease_id.to_string(),
        })
        .await
        .unwrap();
    assert!(stored_psk(&data_dir, &profiles[0].lease_id).is_empty());
    assert_eq!(stored_psk(&data_dir, &profiles[1].lease_id).len(), 60);
    let mut set = events.next_set().await;
    while set.leases.len() != 2 {
        set = events.next_set().await;
    }
    assert!(set
        .leases
        .iter()
        .all(|l| profiles.iter().any(|p| p.preshared_key == l.preshared_key)));

    h.broker
        .admin()
        .grants()
        .revoke(GrantRevokeRequest {
            user: "alice".into(),
            edge: "home".into(),
        })
        .await
        .unwrap();
    for p in &profiles {
        assert!(
            stored_psk(&data_dir, &p.lease_id).is_empty(),
            "{}",
            p.lease_id
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn plaintext_keys_left_by_an_older_broker_are_sealed_or_erased_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("kept");
    let keep = data_dir.clone();
    let (h, token, credential, _) = Harness::granted_with(move |c| c.data_dir = keep).await;
    let live = lease(&h, &token).await;
    let ended = lease(&h, &token).await;
    h.broker
        .admin()
        .leases()
        .revoke(LeaseRevokeRequest {
            id: ended.lease_id.to_string(),
        })
        .await
        .unwrap();
    h.shutdown().await;

    // What an older broker stored: the raw 32 bytes, for the live lease and the revoked one.
    {
        let conn = rusqlite::Connection::open(data_dir.join("broker.db")).unwrap();
        for p in [&live, &ended] {
            conn.execute(
                "UPDATE leases SET preshared_key = ? WHERE id = ?",
                rusqlite::params![p.preshared_key.as_bytes().as_slice(), p.lease_id.as_str()],
            )
            .unwrap();
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    assert!(!files_holding(&data_dir, live.preshared_key.as_bytes()).is_empty());

    let keep = data_dir.clone();
    let h = Harness::with_config(move |c| c.data_dir = keep).await;
    assert_eq!(stored_psk(&data_dir, &live.lease_id).len(), 60);
    assert!(stored_psk(&data_dir, &ended.lease_id).is_empty());
    for p in [&live, &ended] {
        let key = p.preshared_key.as_bytes();
        assert_eq!(files_holding(&data_dir, key), Vec::<PathBuf>::new());
    }
    let mut events = SseReader::new(h.open_sync(&credential).await);
    let set = events.next_set().await;
    assert_eq!(set.leases.len(), 1);
    assert_eq!(set.leases[0].preshared_key, live.preshared_key);
    h.shutdown().await;
}

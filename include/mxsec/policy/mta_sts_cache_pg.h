// mta_sts_cache_pg.h - the MTA-STS policy cache a fleet of mxsec hosts
// shares on PostgreSQL (state_backend = postgresql://..., mxsec.conf(5)),
// and the layered cache every host uses with it: the shared store first,
// the host's own SQLite file (state_dir/mta-sts.sqlite) as the local copy
// that keeps every policy it has seen in force while the shared store is
// down.
//
// Promises of the PostgreSQL cache (OpenPgStsCache):
//   - the semantics of the SQLite cache (mta_sts.h StsCache, read
//     mta_sts_cache.cc): the stored text is parsed again on every read, the
//     expiry is fetched_at + the text's max_age, Put refuses text that does
//     not parse, RecordRefreshFailure changes an entry only while its
//     fetched_at is the one that was read;
//   - Put never replaces a newer fetch with an older one: two hosts
//     refreshing at once leave the later fetch (the condition is in the
//     upsert itself, so no read-then-write race); the row records which
//     host fetched it (fetched_by);
//   - Remove leaves the mark of the removal (mta_sts.h StsRemoval, with
//     the removing host) in the policy's row: it reads as no policy, and
//     only a fetch after it replaces it (Put of a fetch in the removal's
//     second, or earlier, changes nothing); RecordRemoval likewise stores a
//     removal over an earlier event only;
//   - one connection, guarded by a mutex: safe to share between threads;
//   - a broken connection is reopened, at most once per
//     kPgStsReconnectInterval seconds: while the server is down every call
//     fails at once with kUnavailable instead of waiting for a connect
//     timeout on every lookup.
//
// Promises of the layered cache (NewLayeredStsCache):
//   - when the shared store answers, its word decides: its policy, or no
//     policy when it holds the mark of a removal, is the answer and is
//     copied to the local copy (which therefore follows the fleet's fetches
//     and removals, and enforces what the store last said while the store
//     is down). A local copy older than the store's removal is never put
//     back. The one exception is a later event of this host that the store
//     has not seen: a fetch or a Remove made here while the store was down.
//     Events compare by time (fetched_at, removed_at), a removal after a
//     fetch of the same second; a local event later than the store's is
//     the answer and is offered to the store, whose conditional write
//     keeps the later one. A store with nothing for the domain (no row, no
//     mark: a new database, a row deleted by hand) has said nothing, and
//     gets this host's copy;
//   - the local copy is read on every lookup although the store answers:
//     that read is how a fetch or removal made while the store was down,
//     by any process of this host, reaches the store when it is back, and
//     it spares a write to the local copy when it is current (one indexed
//     SQLite read, no lock taken, against a write per lookup or a second
//     record of what is pending);
//   - a failure of the shared store is never "no policy": the local copy
//     answers, and the failure is reported (StateStoreUp() false, the
//     listener called once when the store goes down and once when it comes
//     back, never per lookup);
//   - Put, Remove, RecordRemoval and RecordRefreshFailure change the local
//     copy always and the shared store when it answers; they fail only when the local copy
//     cannot be changed (a shared store that fails is reported as down, as
//     above: whatever its error, it is not answering);
//   - RefreshCandidates come from the shared store (the fleet refreshes
//     what any host fetched), from the local copy while it is down.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "mxsec/base/config.h"
#include "mxsec/base/status.h"
#include "mxsec/policy/mta_sts.h"

namespace mxsec {

// At most one attempt to reopen a broken connection to the shared store per
// this many seconds: a down server costs one connect attempt per interval,
// not one per lookup.
inline constexpr int64_t kPgStsReconnectInterval = 10;

// The PostgreSQL cache of cfg.state_backend, rows written as fetched by
// `host` (StateHostName). It connects at once (ConnectPgState): kInvalid
// when the database has no schema of this version (`mxsec db init` /
// `migrate`: a configuration error, never a fallback), kUnavailable when the
// server cannot be reached. With `allow_down`, a server that cannot be
// reached is not an error: the cache is returned unconnected, tries again
// after kPgStsReconnectInterval, and `*connect_error` says why it is down.
Result<std::unique_ptr<StsCache>> OpenPgStsCache(const Config& cfg, const std::string& host, bool allow_down,
                                                 std::string* connect_error);

// Called when the shared store goes down (up = false, `why` the error) and
// when it answers again (up = true, `why` empty). Called with no lock held
// by the cache, from whichever thread noticed the change.
using StateStoreListener = std::function<void(bool up, const std::string& why)>;

class LayeredStsCache : public StsCache {
 public:
  // The state of the shared store as last seen: true when the last call to
  // it succeeded.
  virtual bool StateStoreUp() const = 0;
  // Why the store was last seen down ("" when up).
  virtual std::string StateStoreError() const = 0;
};

// `shared` (the fleet's store) over `local` (this host's copy). The store
// is taken as up until a call to it fails, unless `initially_down` says
// why it is not (then the listener is not called for that first state).
std::unique_ptr<LayeredStsCache> NewLayeredStsCache(std::unique_ptr<StsCache> shared, std::unique_ptr<StsCache> local,
                                                    StateStoreListener listener,
                                                    const std::string& initially_down = "");

}  // namespace mxsec

// Package logkey names the structured log fields attlsd writes, one key per
// concept, so that every package logs a connection the same way.
package logkey

// Connection fields.
const (
	ConnID     = "conn_id"     // the id also sent to the backend as UNIQUE_ID
	Rule       = "rule"        // the matched rule's name
	Client     = "client"      // the client's address
	Listener   = "listener"    // the address the client reached
	Backend    = "backend"     // where an inbound rule's cleartext goes
	Endpoint   = "endpoint"    // where an outbound rule originates TLS
	Remote     = "remote"      // the endpoint address actually connected
	Local      = "local"       // attlsd's own address on an outbound connection
	Direction  = "direction"   // "inbound" or "outbound"
	SNI        = "sni"         // server name the client asked for
	ALPN       = "alpn"        // negotiated application protocol
	TLSVersion = "tls_version" // e.g. "TLSv1.3"
	Cipher     = "cipher"      // IANA cipher suite name
	Group      = "group"       // key-exchange group
	BytesIn    = "bytes_in"    // client to backend
	BytesOut   = "bytes_out"   // backend to client
	Duration   = "duration"    // connection lifetime
	Reason     = "reason"      // why the connection ended
	Code       = "code"        // AT-TLS return code, where one applies
	Generation = "generation"  // the policy generation the connection runs under
)

// Daemon fields.
const (
	Listeners    = "listeners"     // every bound listener
	Policy       = "policy"        // the policy file
	Version      = "version"       // attlsd version
	Added        = "added"         // rules a reload added
	Removed      = "removed"       // rules a reload removed
	Changed      = "changed"       // rules a reload changed
	Rotated      = "rotated"       // environments whose certificate a reload replaced
	Trigger      = "trigger"       // what started a reload
	Watch        = "watch"         // how policy files are watched
	Folder       = "folder"        // a watched folder
	Folders      = "folders"       // every watched folder
	Interval     = "interval"      // how often files are polled
	RetryIn      = "retry_in"      // how long until a failed step is tried again
	Admin        = "admin"         // the admin endpoint's address
	Open         = "open"          // connections open
	DrainTimeout = "drain_timeout" // how long a drain may take
)

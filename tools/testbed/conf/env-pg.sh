## env-pg.sh: appended to DIR/env.sh when the test bed runs PostgreSQL (TB_PG=1); TB_Q: the directory quoted for
## the shell (printf %q); PG_BIN_Q: the server's bin directory, likewise
# PostgreSQL (state_backend of a fleet of mxsec hosts): mxsec logs in as TB_PG_ROLE over TCP, the password
# only in the passfile TB_PG_PASSFILE (host:port:db:user:password, mode 0600), never in the URI
TB_PG=1
TB_PG_ADDR=@PG_ADDR@
TB_PG_PORT=@PG_PORT@
TB_PG_ROLE=@PG_ROLE@
TB_PG_DB=@PG_DB@
TB_PG_URI=@PG_URI@
TB_PG_PASSFILE=@TB_Q@/pg/pgpass
TB_PG_LOG=@TB_Q@/pg/postgres.log
TB_PG_BIN=@PG_BIN_Q@
TB_PG_OS_USER=@PG_OS_USER@
TB_PG_SOCKDIR=@TB_Q@/pg/run
export TB_PG TB_PG_ADDR TB_PG_PORT TB_PG_ROLE TB_PG_DB TB_PG_URI TB_PG_PASSFILE TB_PG_LOG TB_PG_BIN TB_PG_OS_USER TB_PG_SOCKDIR

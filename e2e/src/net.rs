//! Ports for servers a test starts that cannot pick their own.

/// A TCP port free on 127.0.0.1 right now. Prefer a server that binds port 0 and reports it;
/// this is for the ones that take a port number.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

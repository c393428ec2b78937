//! Commands 1–3: Query Config Information, Mac Mask List, Reserve/Release: the rare,
//! stateful, lock-protected part of the protocol.

use super::*;

impl AoeTarget {
    // ---- Command 1: Query Config Information --------------------------------------------

    pub(super) fn config(&self, ex: &Export, req: &Request, tx: &mut dyn Transmit) {
        let packet = ConfigPacket::new_unchecked(req.arg);
        let (ccmd, string) = match ConfigRepr::parse(&packet) {
            Ok(r) => (r.command, r.config_string),
            Err(WireError::Truncated) => {
                bump(&self.stats.truncated);
                return;
            }
            Err(WireError::BadLength) => {
                let config = read(&ex.config);
                let error = Some(ErrorCode::BadArgument);
                self.config_reply(
                    ex,
                    req.src,
                    req.header.tag,
                    packet.command(),
                    error,
                    &config,
                    tx,
                );
                return;
            }
        };
        let tag = req.header.tag;
        match ccmd {
            ConfigCommand::Read => {
                let config = read(&ex.config);
                self.config_reply(ex, req.src, tag, ccmd, None, &config, tx);
            }
            ConfigCommand::Test => {
                let config = read(&ex.config);
                if config.as_slice() == string {
                    self.config_reply(ex, req.src, tag, ccmd, None, &config, tx);
                }
            }
            ConfigCommand::TestPrefix => {
                let config = read(&ex.config);
                if config.starts_with(string) {
                    self.config_reply(ex, req.src, tag, ccmd, None, &config, tx);
                }
            }
            ConfigCommand::Set | ConfigCommand::ForceSet => {
                let mut config = write(&ex.config);
                let error = if ccmd == ConfigCommand::ForceSet
                    || config.is_empty()
                    || config.as_slice() == string
                {
                    // Within the preallocated capacity: no allocation.
                    config.clear();
                    config.extend_from_slice(string);
                    self.state_changed();
                    None
                } else {
                    Some(ErrorCode::ConfigStringPresent)
                };
                self.config_reply(ex, req.src, tag, ccmd, error, &config, tx);
            }
            ConfigCommand::Unknown(_) => {
                let config = read(&ex.config);
                let error = Some(ErrorCode::BadArgument);
                self.config_reply(ex, req.src, tag, ccmd, error, &config, tx);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn config_reply(
        &self,
        ex: &Export,
        dst: MacAddr,
        tag: u32,
        ccmd: ConfigCommand,
        error: Option<ErrorCode>,
        config: &[u8],
        tx: &mut dyn Transmit,
    ) {
        let repr = ConfigRepr {
            buffer_count: ex.buffer_count,
            firmware_version: FIRMWARE_VERSION,
            sector_count: self.sector_count(),
            aoe_version: VERSION,
            command: ccmd,
            config_string: config,
        };
        let len = ARG_START + repr.buffer_len();
        let buf = self.reply_buffer(tx, ex, dst, Command::QueryConfig, tag, error, len);
        repr.emit(&mut ConfigPacket::new_unchecked(&mut buf[ARG_START..]));
        self.commit(tx, len);
        if error.is_some() {
            bump(&self.stats.aoe_errors);
        }
    }

    // ---- Command 2: Mac Mask List -------------------------------------------------------

    /// Whether a Mac Mask List or Reserve/Release argument that did not parse is answered
    /// with Error 2: a list count longer than the frame is (unless broadcast, which is counted
    /// and refused); a truncated argument is counted and dropped.
    fn answer_list_error(&self, e: WireError, req: &Request) -> bool {
        match e {
            WireError::Truncated => {
                bump(&self.stats.truncated);
                false
            }
            WireError::BadLength if req.broadcast => {
                bump(&self.stats.broadcast_refused);
                false
            }
            WireError::BadLength => true,
        }
    }

    pub(super) fn mask(&self, ex: &Export, req: &Request, tx: &mut dyn Transmit) {
        let packet = MaskPacket::new_unchecked(req.arg);
        let repr = match MaskRepr::parse(&packet) {
            Ok(r) => r,
            Err(e) => {
                // Dir Count longer than the frame: never read past what arrived.
                if self.answer_list_error(e, req) {
                    self.mask_error_reply(ex, req, packet.command(), tx);
                }
                return;
            }
        };
        match repr.command {
            MaskCommand::Read => {
                let list = *read(&ex.mask);
                self.mask_list_reply(ex, req, repr.command, &list, tx);
            }
            MaskCommand::Edit if req.broadcast => {
                bump(&self.stats.broadcast_refused);
            }
            MaskCommand::Edit => {
                let mut list = write(&ex.mask);
                let mut failed = None;
                for i in 0..usize::from(repr.dir_count) {
                    let Some(d) = packet.directive(i) else { break };
                    let ok = match d.command {
                        DirectiveCommand::None => Ok(()),
                        DirectiveCommand::Add if list.add(d.mac) => Ok(()),
                        DirectiveCommand::Add => Err(MaskError::ListFull),
                        DirectiveCommand::Delete => {
                            list.remove(d.mac);
                            Ok(())
                        }
                        DirectiveCommand::Unknown(_) => Err(MaskError::BadDirective),
                    };
                    if let Err(e) = ok {
                        failed = Some((i, e));
                        break;
                    }
                }
                ex.masked.store(!list.is_empty(), Ordering::Release);
                self.state_changed();
                let list = *list;
                match failed {
                    None => self.mask_list_reply(ex, req, repr.command, &list, tx),
                    Some((index, e)) => self.mask_failed_reply(ex, req, &packet, index, e, tx),
                }
            }
            MaskCommand::Unknown(_) if req.broadcast => {
                bump(&self.stats.broadcast_refused);
            }
            MaskCommand::Unknown(_) => self.mask_error_reply(ex, req, repr.command, tx),
        }
    }

    /// Success: the current list as directives with DCmd 0.
    fn mask_list_reply(
        &self,
        ex: &Export,
        req: &Request,
        command: MaskCommand,
        list: &MacList,
        tx: &mut dyn Transmit,
    ) {
        let repr = MaskRepr {
            command,
            error: None,
            // At most MAC_LIST_CAP (32).
            dir_count: list.len as u8,
        };
        let len = ARG_START + repr.buffer_len();
        let h = &req.header;
        let buf = self.reply_buffer(tx, ex, req.src, h.command, h.tag, None, len);
        let mut out = MaskPacket::new_unchecked(&mut buf[ARG_START..]);
        repr.emit(&mut out);
        for (i, &mac) in list.as_slice().iter().enumerate() {
            let d = Directive {
                command: DirectiveCommand::None,
                mac,
            };
            out.set_directive(i, &d);
        }
        self.commit(tx, len);
    }

    /// An edit stopped at directive `index`: MError set, Dir Count = `index`, followed by the
    /// `index` directives that were applied (echoed), so the frame stays self-consistent.
    fn mask_failed_reply<T: AsRef<[u8]>>(
        &self,
        ex: &Export,
        req: &Request,
        request: &MaskPacket<T>,
        index: usize,
        error: MaskError,
        tx: &mut dyn Transmit,
    ) {
        let repr = MaskRepr {
            command: MaskCommand::Edit,
            error: Some(error),
            // index < Dir Count <= 255.
            dir_count: index as u8,
        };
        let len = ARG_START + repr.buffer_len();
        let h = &req.header;
        let buf = self.reply_buffer(tx, ex, req.src, h.command, h.tag, None, len);
        let mut out = MaskPacket::new_unchecked(&mut buf[ARG_START..]);
        repr.emit(&mut out);
        for i in 0..index {
            let d = request.directive(i).unwrap_or(Directive {
                command: DirectiveCommand::None,
                mac: MacAddr::ZERO,
            });
            out.set_directive(i, &d);
        }
        self.commit(tx, len);
    }

    /// AoE Error 2 with the fixed mask argument (Dir Count 0).
    fn mask_error_reply(
        &self,
        ex: &Export,
        req: &Request,
        command: MaskCommand,
        tx: &mut dyn Transmit,
    ) {
        let mut echo = [0u8; wire::mask::ARG_LEN];
        let repr = MaskRepr {
            command,
            error: None,
            dir_count: 0,
        };
        repr.emit(&mut MaskPacket::new_unchecked(&mut echo[..]));
        self.error_reply(ex, req, ErrorCode::BadArgument, &echo, tx);
    }

    // ---- Command 3: Reserve/Release -----------------------------------------------------

    pub(super) fn reserve(&self, ex: &Export, req: &Request, tx: &mut dyn Transmit) {
        let packet = ReservePacket::new_unchecked(req.arg);
        let repr = match ReserveRepr::parse(&packet) {
            Ok(r) => r,
            Err(e) => {
                if self.answer_list_error(e, req) {
                    self.reserve_error_reply(ex, req, packet.command(), tx);
                }
                return;
            }
        };
        match repr.command {
            ReserveCommand::Read => {
                let list = *read(&ex.reserve);
                self.reserve_list_reply(ex, req, repr.command, None, &list, tx);
            }
            ReserveCommand::Set | ReserveCommand::ForceSet if req.broadcast => {
                bump(&self.stats.broadcast_refused);
            }
            ReserveCommand::Set | ReserveCommand::ForceSet => {
                if usize::from(repr.nmacs) > MAC_LIST_CAP {
                    self.reserve_error_reply(ex, req, repr.command, tx);
                    return;
                }
                let mut list = write(&ex.reserve);
                let allowed = repr.command == ReserveCommand::ForceSet
                    || list.is_empty()
                    || list.contains(req.src);
                let error = if allowed {
                    list.clear();
                    for i in 0..usize::from(repr.nmacs) {
                        if let Some(mac) = packet.mac(i) {
                            list.add(mac);
                        }
                    }
                    ex.reserved.store(!list.is_empty(), Ordering::Release);
                    self.state_changed();
                    None
                } else {
                    Some(ErrorCode::TargetReserved)
                };
                let list = *list;
                self.reserve_list_reply(ex, req, repr.command, error, &list, tx);
            }
            ReserveCommand::Unknown(_) if req.broadcast => {
                bump(&self.stats.broadcast_refused);
            }
            ReserveCommand::Unknown(_) => self.reserve_error_reply(ex, req, repr.command, tx),
        }
    }

    /// The current reserve list (with Error 6 when a set was refused).
    fn reserve_list_reply(
        &self,
        ex: &Export,
        req: &Request,
        command: ReserveCommand,
        error: Option<ErrorCode>,
        list: &MacList,
        tx: &mut dyn Transmit,
    ) {
        let repr = ReserveRepr {
            command,
            // At most MAC_LIST_CAP (32).
            nmacs: list.len as u8,
        };
        let len = ARG_START + repr.buffer_len();
        let h = &req.header;
        let buf = self.reply_buffer(tx, ex, req.src, h.command, h.tag, error, len);
        let mut out = ReservePacket::new_unchecked(&mut buf[ARG_START..]);
        repr.emit(&mut out);
        for (i, &mac) in list.as_slice().iter().enumerate() {
            out.set_mac(i, mac);
        }
        self.commit(tx, len);
        if error.is_some() {
            bump(&self.stats.aoe_errors);
        }
    }

    /// AoE Error 2 with the fixed reserve argument (NMacs 0).
    fn reserve_error_reply(
        &self,
        ex: &Export,
        req: &Request,
        command: ReserveCommand,
        tx: &mut dyn Transmit,
    ) {
        let mut echo = [0u8; wire::reserve::ARG_LEN];
        let repr = ReserveRepr { command, nmacs: 0 };
        repr.emit(&mut ReservePacket::new_unchecked(&mut echo[..]));
        self.error_reply(ex, req, ErrorCode::BadArgument, &echo, tx);
    }
}

"""The Gy/Ro application: the one place where Diameter meets charging. CCR parsing and
CCA building (:mod:`.translation`), the Result-Code table (:mod:`.result_codes`), the
credit-control application (:mod:`.application`), batches coalesced across connections
(:mod:`.coalescer`), RAR/ASR (:mod:`.notifier`) and the peers that own sessions
(:mod:`.peer_routes`)."""

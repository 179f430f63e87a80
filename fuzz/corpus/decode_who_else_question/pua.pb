
comune-lecce 389ecc0ada3f6dba1c50884adffa0173 *op-17
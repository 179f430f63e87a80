
	asl-lecce 8a06e8b26034a7e6592d4308d157faab *cot.turno-notte0
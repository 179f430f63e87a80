
	asl-lecce 78a6bbeef965d4f0bd1529b8430691cc!distretto-lecce(0é®8@H